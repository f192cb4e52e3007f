/*
 * ort_minimal_api.h: the part of ONNX Runtime's C API (onnxruntime_c_api.h) that the C benchmarks
 * call. The ORT wheel ships libonnxruntime.so but no headers, so, as DESIGN.md says, we declare
 * what we use ourselves, following the published API's member order: struct OrtApi is a table of
 * function pointers that ONNX Runtime only ever appends to, so a member's index never changes.
 * Members we do not call are kept as padding; the static asserts pin each used member's index
 * (from ORT_API_VERSION 22's header, the version requested from OrtGetApiBase()->GetApi).
 */
#ifndef QK_BENCH_ORT_MINIMAL_API_H
#define QK_BENCH_ORT_MINIMAL_API_H

#include <stddef.h>
#include <stdint.h>

#define ORT_MINIMAL_API_VERSION 22
#define ORT_MINIMAL_API_VERSION_STRING "22"

typedef struct OrtStatus OrtStatus;
typedef struct OrtEnv OrtEnv;
typedef struct OrtSession OrtSession;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtValue OrtValue;
typedef struct OrtMemoryInfo OrtMemoryInfo;

typedef enum OrtLoggingLevel {
    ORT_LOGGING_LEVEL_VERBOSE = 0,
    ORT_LOGGING_LEVEL_INFO = 1,
    ORT_LOGGING_LEVEL_WARNING = 2,
    ORT_LOGGING_LEVEL_ERROR = 3,
    ORT_LOGGING_LEVEL_FATAL = 4
} OrtLoggingLevel;

typedef enum GraphOptimizationLevel {
    ORT_DISABLE_ALL = 0,
    ORT_ENABLE_BASIC = 1,
    ORT_ENABLE_EXTENDED = 2,
    ORT_ENABLE_ALL = 99
} GraphOptimizationLevel;

typedef enum ONNXTensorElementDataType {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1
} ONNXTensorElementDataType;

typedef enum OrtAllocatorType { OrtDeviceAllocator = 0, OrtArenaAllocator = 1 } OrtAllocatorType;
typedef enum OrtMemType { OrtMemTypeDefault = 0 } OrtMemType;

typedef struct OrtApi {
    void *unused_0_1[2];
    const char *(*GetErrorMessage)(const OrtStatus *status);
    OrtStatus *(*CreateEnv)(OrtLoggingLevel log_severity_level, const char *logid, OrtEnv **out);
    void *unused_4_7[4];
    OrtStatus *(*CreateSessionFromArray)(const OrtEnv *env, const void *model_data, size_t model_data_length,
                                         const OrtSessionOptions *options, OrtSession **out);
    OrtStatus *(*Run)(OrtSession *session, const OrtRunOptions *run_options, const char *const *input_names,
                      const OrtValue *const *inputs, size_t input_len, const char *const *output_names,
                      size_t output_names_len, OrtValue **outputs);
    OrtStatus *(*CreateSessionOptions)(OrtSessionOptions **options);
    void *unused_11_22[12];
    OrtStatus *(*SetSessionGraphOptimizationLevel)(OrtSessionOptions *options, GraphOptimizationLevel level);
    OrtStatus *(*SetIntraOpNumThreads)(OrtSessionOptions *options, int intra_op_num_threads);
    OrtStatus *(*SetInterOpNumThreads)(OrtSessionOptions *options, int inter_op_num_threads);
    void *unused_26_48[23];
    OrtStatus *(*CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo *info, void *p_data, size_t p_data_len,
                                                 const int64_t *shape, size_t shape_len, ONNXTensorElementDataType type,
                                                 OrtValue **out);
    void *unused_50;
    OrtStatus *(*GetTensorMutableData)(OrtValue *value, void **out);
    void *unused_52_68[17];
    OrtStatus *(*CreateCpuMemoryInfo)(OrtAllocatorType type, OrtMemType mem_type, OrtMemoryInfo **out);
    void *unused_70_91[22];
    void (*ReleaseEnv)(OrtEnv *input);
    void (*ReleaseStatus)(OrtStatus *input);
    void (*ReleaseMemoryInfo)(OrtMemoryInfo *input);
    void (*ReleaseSession)(OrtSession *input);
    void (*ReleaseValue)(OrtValue *input);
    void *unused_97_99[3];
    void (*ReleaseSessionOptions)(OrtSessionOptions *input);
} OrtApi;

typedef struct OrtApiBase {
    const OrtApi *(*GetApi)(uint32_t version);
    const char *(*GetVersionString)(void);
} OrtApiBase;

#define ORT_MINIMAL_SLOT(member, index) \
    _Static_assert(offsetof(OrtApi, member) == (index) * sizeof(void *), #member " is OrtApi member " #index)
ORT_MINIMAL_SLOT(GetErrorMessage, 2);
ORT_MINIMAL_SLOT(CreateEnv, 3);
ORT_MINIMAL_SLOT(CreateSessionFromArray, 8);
ORT_MINIMAL_SLOT(Run, 9);
ORT_MINIMAL_SLOT(CreateSessionOptions, 10);
ORT_MINIMAL_SLOT(SetSessionGraphOptimizationLevel, 23);
ORT_MINIMAL_SLOT(SetIntraOpNumThreads, 24);
ORT_MINIMAL_SLOT(SetInterOpNumThreads, 25);
ORT_MINIMAL_SLOT(CreateTensorWithDataAsOrtValue, 49);
ORT_MINIMAL_SLOT(GetTensorMutableData, 51);
ORT_MINIMAL_SLOT(CreateCpuMemoryInfo, 69);
ORT_MINIMAL_SLOT(ReleaseEnv, 92);
ORT_MINIMAL_SLOT(ReleaseStatus, 93);
ORT_MINIMAL_SLOT(ReleaseMemoryInfo, 94);
ORT_MINIMAL_SLOT(ReleaseSession, 95);
ORT_MINIMAL_SLOT(ReleaseValue, 96);
ORT_MINIMAL_SLOT(ReleaseSessionOptions, 100);
#undef ORT_MINIMAL_SLOT

#endif

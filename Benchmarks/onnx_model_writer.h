/*
 * onnx_model_writer.h: just enough protobuf to write a small ONNX model in memory (nodes with
 * integer attributes, raw-data initializers, float inputs and outputs), so a C benchmark can hand
 * ONNX Runtime a model without Python or the onnx package. Field numbers are onnx.proto's.
 * Header-only, static functions; out of memory exits the process (benchmarks only).
 */
#ifndef QK_BENCH_ONNX_MODEL_WRITER_H
#define QK_BENCH_ONNX_MODEL_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* onnx.proto TensorProto.DataType */
enum { ONNX_FLOAT = 1, ONNX_UINT8 = 2, ONNX_INT8 = 3 };

/* A growable protobuf message. */
typedef struct pb_buf {
    uint8_t *bytes;
    size_t count, capacity;
} pb_buf;

static void pb_reserve(pb_buf *b, size_t extra) {
    if (b->count + extra <= b->capacity) return;
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->count + extra) capacity *= 2;
    uint8_t *bytes = (uint8_t *)realloc(b->bytes, capacity);
    if (!bytes) {
        fprintf(stderr, "out of memory writing an ONNX model\n");
        exit(1);
    }
    b->bytes = bytes;
    b->capacity = capacity;
}

static void pb_raw(pb_buf *b, const void *data, size_t count) {
    pb_reserve(b, count);
    if (count) memcpy(b->bytes + b->count, data, count);
    b->count += count;
}

static void pb_varint(pb_buf *b, uint64_t v) {
    uint8_t out[10];
    size_t n = 0;
    do {
        out[n] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v) out[n] |= 0x80;
        n++;
    } while (v);
    pb_raw(b, out, n);
}

/* Wire types: 0 varint, 2 length-delimited. */
static void pb_int(pb_buf *b, uint32_t field, int64_t v) {
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, (uint64_t)v);
}

static void pb_bytes(pb_buf *b, uint32_t field, const void *data, size_t count) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, count);
    pb_raw(b, data, count);
}

static void pb_string(pb_buf *b, uint32_t field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

/* Appends `sub` as a nested message and frees it. */
static void pb_message(pb_buf *b, uint32_t field, pb_buf *sub) {
    pb_bytes(b, field, sub->bytes, sub->count);
    free(sub->bytes);
    memset(sub, 0, sizeof *sub);
}

/* ---- onnx.proto messages ---- */

typedef struct onnx_attr {
    const char *name;
    int64_t value;
} onnx_attr;

/* NodeProto with INT attributes (AttributeProto.type = INT, 2). */
static void onnx_node(pb_buf *graph, const char *op_type, const char *domain, const char *const *inputs, int input_count,
                      const char *const *outputs, int output_count, const onnx_attr *attrs, int attr_count) {
    pb_buf node = {0};
    for (int i = 0; i < input_count; i++) pb_string(&node, 1, inputs[i]);
    for (int i = 0; i < output_count; i++) pb_string(&node, 2, outputs[i]);
    pb_string(&node, 4, op_type);
    for (int i = 0; i < attr_count; i++) {
        pb_buf attr = {0};
        pb_string(&attr, 1, attrs[i].name);
        pb_int(&attr, 3, attrs[i].value);
        pb_int(&attr, 20, 2);
        pb_message(&node, 5, &attr);
    }
    if (domain) pb_string(&node, 7, domain);
    pb_message(graph, 1, &node);
}

/* TensorProto initializer: dims, data_type, name, raw_data (little-endian element bytes). */
static void onnx_initializer(pb_buf *graph, const char *name, int32_t data_type, const int64_t *dims, int ndim,
                             const void *data, size_t data_bytes) {
    pb_buf tensor = {0};
    for (int i = 0; i < ndim; i++) pb_int(&tensor, 1, dims[i]);
    pb_int(&tensor, 2, data_type);
    pb_string(&tensor, 8, name);
    pb_bytes(&tensor, 9, data, data_bytes);
    pb_message(graph, 5, &tensor);
}

/* ValueInfoProto of a tensor; a dim below 0 is written as the symbolic dimension "M". */
static void onnx_value_info(pb_buf *graph, uint32_t field, const char *name, int32_t elem_type, const int64_t *dims,
                            int ndim) {
    pb_buf shape = {0};
    for (int i = 0; i < ndim; i++) {
        pb_buf dim = {0};
        if (dims[i] < 0) pb_string(&dim, 2, "M");
        else pb_int(&dim, 1, dims[i]);
        pb_message(&shape, 1, &dim);
    }
    pb_buf tensor_type = {0};
    pb_int(&tensor_type, 1, elem_type);
    pb_message(&tensor_type, 2, &shape);
    pb_buf type = {0};
    pb_message(&type, 1, &tensor_type);
    pb_buf info = {0};
    pb_string(&info, 1, name);
    pb_message(&info, 2, &type);
    pb_message(graph, field, &info);
}

static void onnx_graph_input(pb_buf *graph, const char *name, int32_t elem_type, const int64_t *dims, int ndim) {
    onnx_value_info(graph, 11, name, elem_type, dims, ndim);
}

static void onnx_graph_output(pb_buf *graph, const char *name, int32_t elem_type, const int64_t *dims, int ndim) {
    onnx_value_info(graph, 12, name, elem_type, dims, ndim);
}

/* ModelProto (IR 10) around `graph` (consumed), importing ai.onnx at `opset` and com.microsoft 1. */
static pb_buf onnx_model(pb_buf *graph, int64_t opset) {
    pb_buf model = {0};
    pb_int(&model, 1, 10);
    pb_string(&model, 2, "quantkit-benchmark");
    pb_string(graph, 2, "g");
    pb_message(&model, 7, graph);
    pb_buf onnx_domain = {0};
    pb_string(&onnx_domain, 1, "");
    pb_int(&onnx_domain, 2, opset);
    pb_message(&model, 8, &onnx_domain);
    pb_buf ms_domain = {0};
    pb_string(&ms_domain, 1, "com.microsoft");
    pb_int(&ms_domain, 2, 1);
    pb_message(&model, 8, &ms_domain);
    return model;
}

#endif

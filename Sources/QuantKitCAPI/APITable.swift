import CQuantKit

/// The function table of qk_get_api. Built once; never freed; slots are only ever appended.
nonisolated(unsafe) private let apiTable: UnsafeMutablePointer<qk_api> = {
    let table = UnsafeMutablePointer<qk_api>.allocate(capacity: 1)
    table.initialize(to: qk_api(
        struct_size: UInt32(MemoryLayout<qk_api>.size),
        abi_version: UInt32(QK_ABI_VERSION),
        version_number: qk_version_number,
        version_string: qk_version_string,
        last_error: qk_last_error,
        status_string: qk_status_string,
        format_count: qk_format_count,
        format_info_at: qk_format_info_at,
        format_info_get: qk_format_info_get,
        format_from_name: qk_format_from_name,
        quant_params_init: qk_quant_params_init,
        quantized_layout_get: qk_quantized_layout_get,
        quantize: qk_quantize,
        quantize_with_scales: qk_quantize_with_scales,
        dequantize: qk_dequantize,
        quantization_error: qk_quantization_error,
        compare: qk_compare,
        kernel_variant: qk_kernel_variant,
        set_num_threads: qk_set_num_threads,
        get_num_threads: qk_get_num_threads,
        get_extension: qk_get_extension,
        pack_weights: qk_pack_weights,
        packed_matrix_release: qk_packed_matrix_release,
        packed_matrix_get_info: qk_packed_matrix_get_info,
        matmul: qk_matmul,
        matmul_integer: qk_matmul_integer,
        matmul_kernel_variant: qk_matmul_kernel_variant))
    return table
}()

@c @implementation public func qk_get_api(_ abiVersion: UInt32) -> UnsafePointer<qk_api>! {
    // One table serves every version: it only ever grows, so a version-1 caller reads its prefix.
    guard abiVersion >= 1 && abiVersion <= UInt32(QK_ABI_VERSION) else {
        LastError.set("qk_get_api: ABI version \(abiVersion) is not served (this library serves 1...\(QK_ABI_VERSION))")
        return nil
    }
    return UnsafePointer(apiTable)
}

@c @implementation public func qk_get_extension(_ id: UnsafePointer<CChar>!) -> UnsafeRawPointer! {
    // No optional capabilities yet; the ONNX Runtime custom-op plugin will register here.
    guard id != nil else { return nil }
    return nil
}

import CQuantKit
import QuantKit

// Every function declared in Include/quantkit.h. `@c @implementation` makes the compiler check each
// signature against the header. Each body validates its arguments (ParamsConversion, TensorIO)
// before any pointer is used, and reports failures through `guarded`.

// MARK: - Versions and errors

@c @implementation public func qk_version_number() -> UInt32 { UInt32(QK_VERSION_NUMBER) }

@c @implementation public func qk_version_string() -> UnsafePointer<CChar>! { StaticStrings.version }

@c @implementation public func qk_last_error() -> UnsafePointer<CChar>! { LastError.current }

@c @implementation public func qk_status_string(_ status: Int32) -> UnsafePointer<CChar>! {
    guard status >= 0 && Int(status) < StaticStrings.statusNames.count else { return StaticStrings.unknownStatus }
    return StaticStrings.statusNames[Int(status)]
}

// MARK: - Formats

@c @implementation public func qk_format_count() -> Int32 { Int32(FormatTable.all.count) }

@c @implementation public func qk_format_info_at(_ index: Int32, _ info: UnsafeMutablePointer<qk_format_info>!) -> qk_status {
    guarded("qk_format_info_at") {
        guard index >= 0 && Int(index) < FormatTable.all.count else {
            throw QuantError(.invalidArgument, "index \(index) is outside 0..<\(FormatTable.all.count)")
        }
        try writeFormatInfo(FormatTable.all[Int(index)], to: info)
    }
}

@c @implementation public func qk_format_info_get(_ format: Int32, _ info: UnsafeMutablePointer<qk_format_info>!) -> qk_status {
    guarded("qk_format_info_get") {
        let f = try decode(format, as: QuantFormat.self, "format")
        try writeFormatInfo(f.spec, to: info)
    }
}

private func writeFormatInfo(_ spec: FormatSpec, to pointer: UnsafeMutablePointer<qk_format_info>?) throws {
    let info = try StructVersion.prepareOutput(pointer, "info")
    let index = Int(spec.format.rawValue) - 1
    let range = spec.codeRange
    info.write(qk_format_info(
        struct_size: info.structSize, format: spec.format.rawValue, name: StaticStrings.formatNames[index],
        description: StaticStrings.formatDescriptions[index], bits: Int32(spec.bits), flags: spec.flags.rawValue,
        code_min: range.min, code_max: range.max, level_max: spec.levelMax, reserved: 0))
}

@c @implementation public func qk_format_from_name(_ name: UnsafePointer<CChar>!, _ format: UnsafeMutablePointer<Int32>!) -> qk_status {
    guarded("qk_format_from_name") {
        guard let name else { throw nullArgument("name") }
        guard let format else { throw nullArgument("format") }
        let text = String(cString: name)
        guard let found = FormatTable.lookup(text) else {
            let known = FormatTable.all.map(\.name).joined(separator: ", ")
            throw QuantError(.invalidArgument, "unknown format '\(text)'; known formats: \(known)")
        }
        format.pointee = found.rawValue
    }
}

// MARK: - Quantization

@c @implementation public func qk_quant_params_init(_ params: UnsafeMutablePointer<qk_quant_params>!, _ format: Int32) -> qk_status {
    guarded("qk_quant_params_init") {
        let params = try StructVersion.prepareOutput(params, "params")
        let defaults = QuantParams(format: try decode(format, as: QuantFormat.self, "format"))
        params.write(defaults.c(structSize: params.structSize))
    }
}

@c @implementation public func qk_quantized_layout_get(
    _ params: UnsafePointer<qk_quant_params>!, _ ndim: Int32, _ shape: UnsafePointer<Int64>!,
    _ layout: UnsafeMutablePointer<qk_quantized_layout>!
) -> qk_status {
    guarded("qk_quantized_layout_get") {
        let p = try QuantParams(c: params)
        let layout = try StructVersion.prepareOutput(layout, "layout")
        guard ndim >= 0 && ndim <= Int32(QK_MAX_DIMS) else { throw QuantError(.invalidArgument, "ndim is \(ndim), expected 0...\(QK_MAX_DIMS)") }
        guard ndim == 0 || shape != nil else { throw nullArgument("shape") }
        let dims = (0..<Int(ndim)).map { Int(shape[$0]) }
        let plan = try QuantPlan(params: p, shape: dims)
        var out = qk_quantized_layout()
        out.struct_size = layout.structSize
        out.scales_ndim = Int32(plan.scalesShape.count)
        out.data_bytes = plan.dataBytes
        out.scales_bytes = plan.scaleBytes
        out.zero_points_bytes = plan.zeroPointBytes
        out.scales_count = Int64(plan.groupCount)
        withUnsafeMutableBytes(of: &out.scales_shape) { raw in
            let dims = raw.bindMemory(to: Int64.self)
            for (i, d) in plan.scalesShape.enumerated() { dims[i] = Int64(d) }
        }
        layout.write(out)
    }
}

@c @implementation public func qk_quantize(
    _ params: UnsafePointer<qk_quant_params>!, _ input: UnsafePointer<qk_tensor>!, _ output: UnsafeMutablePointer<qk_quantized>!
) -> qk_status {
    guarded("qk_quantize") {
        try withQuantizeArguments(params, input, output) { plan, x, out in try Quantizer.quantize(plan, input: x, into: out) }
    }
}

@c @implementation public func qk_quantize_with_scales(
    _ params: UnsafePointer<qk_quant_params>!, _ input: UnsafePointer<qk_tensor>!, _ output: UnsafeMutablePointer<qk_quantized>!
) -> qk_status {
    guarded("qk_quantize_with_scales") {
        try withQuantizeArguments(params, input, output) { plan, x, out in try Quantizer.quantize(plan, input: x, withScalesIn: out) }
    }
}

/// The checked arguments of both quantize functions: the plan for the input's shape, the input as
/// dense floats, and the output buffers.
private func withQuantizeArguments(
    _ params: UnsafePointer<qk_quant_params>?, _ input: UnsafePointer<qk_tensor>?, _ output: UnsafeMutablePointer<qk_quantized>?,
    _ body: (QuantPlan, UnsafeBufferPointer<Float>, QuantizedBuffers) throws -> Void
) throws {
    let p = try QuantParams(c: params)
    let x = try FloatTensorView(input, name: "input")
    let plan = try QuantPlan(params: p, shape: x.shape)
    let out = try QuantizedArgs(output, plan: plan, name: "output")
    try x.withFloats { try body(plan, $0, out.buffers) }
}

@c @implementation public func qk_dequantize(
    _ params: UnsafePointer<qk_quant_params>!, _ input: UnsafePointer<qk_quantized>!, _ output: UnsafeMutablePointer<qk_tensor>!
) -> qk_status {
    guarded("qk_dequantize") {
        let p = try QuantParams(c: params)
        let y = try FloatTensorView(output, name: "output")
        let plan = try QuantPlan(params: p, shape: y.shape)
        let q = try QuantizedArgs(input, plan: plan, name: "input")
        try y.fillFloats { try Quantizer.dequantize(plan, q.view, into: $0) }
    }
}

@c @implementation public func qk_quantization_error(
    _ params: UnsafePointer<qk_quant_params>!, _ original: UnsafePointer<qk_tensor>!, _ quantized: UnsafePointer<qk_quantized>!,
    _ stats: UnsafeMutablePointer<qk_error_stats>!
) -> qk_status {
    guarded("qk_quantization_error") {
        let p = try QuantParams(c: params)
        let x = try FloatTensorView(original, name: "original")
        let plan = try QuantPlan(params: p, shape: x.shape)
        let q = try QuantizedArgs(quantized, plan: plan, name: "quantized")
        let out = try StatsOutput(stats)
        let restored = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(plan.count, 1))
        defer { restored.deallocate() }
        let restoredView = UnsafeMutableBufferPointer(rebasing: restored[0..<plan.count])
        try Quantizer.dequantize(plan, q.view, into: restoredView)
        let result = x.withFloats { ErrorStats.compare(reference: $0, actual: UnsafeBufferPointer(restoredView), threads: p.threads) }
        out.write(result)
    }
}

@c @implementation public func qk_compare(
    _ reference: UnsafePointer<qk_tensor>!, _ actual: UnsafePointer<qk_tensor>!, _ stats: UnsafeMutablePointer<qk_error_stats>!
) -> qk_status {
    guarded("qk_compare") {
        let r = try FloatTensorView(reference, name: "reference")
        let a = try FloatTensorView(actual, name: "actual")
        guard r.shape == a.shape else { throw QuantError(.shapeMismatch, "reference shape \(r.shape) differs from actual shape \(a.shape)") }
        let out = try StatsOutput(stats)
        let result = r.withFloats { rb in a.withFloats { ab in ErrorStats.compare(reference: rb, actual: ab) } }
        out.write(result)
    }
}

/// A validated qk_error_stats out-parameter.
private struct StatsOutput {
    let output: OutputStruct<qk_error_stats>

    init(_ pointer: UnsafeMutablePointer<qk_error_stats>?) throws {
        output = try StructVersion.prepareOutput(pointer, "stats")
    }

    func write(_ s: ErrorStats) {
        output.write(qk_error_stats(
            struct_size: output.structSize, reserved: 0, count: Int64(s.count), max_abs_error: s.maxAbsError,
            mean_abs_error: s.meanAbsError, rmse: s.rmse, sqnr_db: s.sqnrDB, signal_rms: s.signalRMS))
    }
}

// MARK: - Runtime

@c @implementation public func qk_kernel_variant() -> UnsafePointer<CChar>! {
    StaticStrings.variantNames[Runtime.kernelVariant.rawValue]
}

@c @implementation public func qk_set_num_threads(_ numThreads: Int32) -> qk_status {
    guarded("qk_set_num_threads") {
        guard numThreads >= 0 else { throw QuantError(.invalidArgument, "num_threads \(numThreads) is negative (0 means all cores)") }
        Runtime.setDefaultThreadCount(Int(numThreads))
    }
}

@c @implementation public func qk_get_num_threads() -> Int32 { Int32(clamping: Runtime.defaultThreadCount) }

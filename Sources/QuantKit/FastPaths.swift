import QuantKitAVX2
import QuantKitAVX512

/// One ISA's block kernels (see QuantKitAVX2 / QuantKitAVX512 for their contracts).
struct BlockKernels {
    let minMax: (UnsafePointer<Float>, Int) -> (min: Float, max: Float)
    let encode: (UnsafePointer<Float>, Int, Float, Int32, Int32, Int32, Int32, Bool, UnsafeMutablePointer<UInt8>) -> Void
    let packNibbles: (UnsafePointer<UInt8>, Int, UnsafeMutablePointer<UInt8>) -> Void
    let decode: (UnsafePointer<UInt8>, Int, Bool, Bool, Float, Int32, UnsafeMutablePointer<Float>) -> Void
    let allFinite: (UnsafePointer<Float>, Int) -> Bool

    static func of(_ variant: KernelVariant) -> BlockKernels? {
        switch variant {
        case .scalar: return nil
        case .avx2:
            return BlockKernels(
                minMax: avx2MinMax,
                encode: { avx2EncodeBlock($0, $1, scale: $2, zeroPoint: $3, codeMin: $4, codeMax: $5, codeMask: $6, tiesAway: $7, codes: $8) },
                packNibbles: avx2PackNibbles,
                decode: { avx2DecodeBlock($0, $1, nibbles: $2, signed: $3, scale: $4, zeroPoint: $5, out: $6) },
                allFinite: avx2AllFinite)
        case .avx512:
            return BlockKernels(
                minMax: avx512MinMax,
                encode: { avx512EncodeBlock($0, $1, scale: $2, zeroPoint: $3, codeMin: $4, codeMax: $5, codeMask: $6, tiesAway: $7, codes: $8) },
                packNibbles: avx512PackNibbles,
                decode: { avx512DecodeBlock($0, $1, nibbles: $2, signed: $3, scale: $4, zeroPoint: $5, out: $6) },
                allFinite: avx512AllFinite)
        }
    }
}

/// The cases that dominate real use, on the ISA kernels: 4- and 8-bit integer formats, min-max
/// scales, groups that are contiguous runs (blocked along the last axis, per-row, per-tensor), in
/// the ONNX or MatMulNBits layout. Each function returns false for any other case, and the
/// reference path in Quantizer does the work. Results are bit-identical to the reference.
enum FastPaths {
    static func allFinite(_ p: UnsafePointer<Float>, count: Int, variant: KernelVariant = Runtime.kernelVariant) -> Bool {
        if let kernels = BlockKernels.of(variant) { return kernels.allFinite(p, count) }
        for i in 0..<count where !p[i].isFinite { return false }
        return true
    }

    static func covers(_ plan: QuantPlan, variant: KernelVariant) -> Bool {
        guard variant != .scalar, plan.codeSpec.isInteger, plan.codeSpec.bits == 4 || plan.codeSpec.bits == 8,
              plan.groupCount > 0, plan.groupsAreContiguous
        else { return false }
        switch plan.params.layout {
        case .matMulNBits: return true
        case .bnb4: return false
        case .onnx: return plan.codeSpec.bits == 8 || groupsStartOnWholeBytes(plan)
        }
    }

    /// 4-bit ONNX layout: every group must begin at an even element to own whole bytes.
    private static func groupsStartOnWholeBytes(_ plan: QuantPlan) -> Bool {
        switch plan.params.granularity {
        case .perTensor: return true
        case .perAxis: return plan.inner % 2 == 0 || plan.dim == 1
        case .blocked:
            return (plan.block % 2 == 0 || plan.blocksPerDim == 1) && (plan.dim % 2 == 0 || plan.outer == 1)
        }
    }

    static func quantize(_ plan: QuantPlan, input: UnsafeBufferPointer<Float>, into out: QuantizedBuffers,
                         variant: KernelVariant = Runtime.kernelVariant) -> Bool {
        guard plan.params.method == .minMax, covers(plan, variant: variant), let kernels = BlockKernels.of(variant),
              let source = input.baseAddress, let dataBase = out.data.baseAddress
        else { return false }
        let data = dataBase.assumingMemoryBound(to: UInt8.self)
        let scratch = GroupScratch(plan, withCodes: false)
        defer { scratch.deallocate() }
        let coder = ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding)
        let selector = ScaleSelector(plan: plan, coder: coder)
        let nibbles = plan.codeSpec.bits == 4
        let tiesAway = plan.params.rounding == .halfAway
        let matMulNBits = plan.params.layout == .matMulNBits
        let blockBytes = plan.block * plan.codeSpec.bits / 8
        Parallel.forEachChunk(count: plan.groupCount, threads: plan.params.threads, minChunk: Quantizer.groupsPerTask(plan)) { groups in
            let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(plan.maxGroupSize, plan.block))
            defer { codes.deallocate() }
            for g in groups {
                let span = plan.span(ofGroup: g)
                let length = span.elementCount
                let x = source + span.base
                let range = kernels.minMax(x, length)
                let (scale, zp) = selector.fromRange(lo: range.min, hi: range.max)
                scratch.scales[g] = scale
                scratch.zeroPoints[g] = zp
                if scale == 0 {
                    codes.update(repeating: coder.storedZeroPoint(zp), count: length)
                } else {
                    kernels.encode(x, length, scale, zp, coder.codeMin, coder.codeMax, coder.mask, tiesAway, codes)
                }
                if matMulNBits {
                    codes.advanced(by: length).update(repeating: 0, count: plan.block - length)  // block padding
                    let destination = data + g * blockBytes
                    if nibbles { kernels.packNibbles(codes, plan.block, destination) } else { destination.update(from: codes, count: plan.block) }
                } else if nibbles {
                    kernels.packNibbles(codes, length, data + span.base / 2)
                    if length % 2 == 1 { data[(span.base + length) / 2] = codes[length - 1] }  // the tensor's last element
                } else {
                    (data + span.base).update(from: codes, count: length)
                }
            }
        }
        Quantizer.writeScales(plan, scratch, into: out)
        return true
    }

    static func dequantize(_ plan: QuantPlan, _ q: QuantizedView, into output: UnsafeMutableBufferPointer<Float>,
                           variant: KernelVariant = Runtime.kernelVariant) throws -> Bool {
        guard covers(plan, variant: variant), let kernels = BlockKernels.of(variant),
              let target = output.baseAddress, let dataBase = q.data.baseAddress
        else { return false }
        let data = dataBase.assumingMemoryBound(to: UInt8.self)
        let scratch = GroupScratch(plan, withCodes: false)
        defer { scratch.deallocate() }
        try Quantizer.readScales(plan, q, into: scratch, requireFinite: false)
        let nibbles = plan.codeSpec.bits == 4
        let signed = plan.codeSpec.flags.contains(.signed)
        let matMulNBits = plan.params.layout == .matMulNBits
        let blockBytes = plan.block * plan.codeSpec.bits / 8
        Parallel.forEachChunk(count: plan.groupCount, threads: plan.params.threads, minChunk: Quantizer.groupsPerTask(plan)) { groups in
            for g in groups {
                let span = plan.span(ofGroup: g)
                let offset = matMulNBits ? g * blockBytes : (nibbles ? span.base / 2 : span.base)
                kernels.decode(data + offset, span.elementCount, nibbles, signed, scratch.scales[g], scratch.zeroPoints[g], target + span.base)
            }
        }
        return true
    }
}

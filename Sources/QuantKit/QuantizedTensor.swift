/// A quantized tensor that owns its buffers: the convenient Swift API (CLI, tests, algorithms).
public struct QuantizedTensor: Sendable {
    public let plan: QuantPlan
    public var data: [UInt8]
    public var scales: [UInt8]
    public var zeroPoints: [UInt8]

    public var shape: [Int] { plan.shape }
    public var byteCount: Int { data.count + scales.count + zeroPoints.count }
    /// Storage per element, scales and zero points included.
    public var bitsPerWeight: Double { plan.count == 0 ? 0 : Double(byteCount * 8) / Double(plan.count) }

    public init(quantizing values: [Float], shape: [Int], params: QuantParams) throws {
        let plan = try QuantPlan(params: params, shape: shape)
        var data = [UInt8](repeating: 0, count: plan.dataBytes)
        var scales = [UInt8](repeating: 0, count: plan.scaleBytes)
        var zeroPoints = [UInt8](repeating: 0, count: plan.zeroPointBytes)
        try values.withUnsafeBufferPointer { input in
            try data.withUnsafeMutableBytes { d in
                try scales.withUnsafeMutableBytes { s in
                    try zeroPoints.withUnsafeMutableBytes { z in
                        try Quantizer.quantize(plan, input: input, into: QuantizedBuffers(data: d, scales: s, zeroPoints: plan.storesZeroPoints ? z : nil))
                    }
                }
            }
        }
        self.plan = plan
        self.data = data
        self.scales = scales
        self.zeroPoints = zeroPoints
    }

    public func dequantized() throws -> [Float] {
        var output = [Float](repeating: 0, count: plan.count)
        try data.withUnsafeBytes { d in
            try scales.withUnsafeBytes { s in
                try zeroPoints.withUnsafeBytes { z in
                    try output.withUnsafeMutableBufferPointer { o in
                        try Quantizer.dequantize(plan, QuantizedView(data: d, scales: s, zeroPoints: plan.storesZeroPoints ? z : nil), into: o)
                    }
                }
            }
        }
        return output
    }

    /// Scales as floats, whatever type they are stored in.
    public var scaleValues: [Float] {
        scales.withUnsafeBytes { raw in
            (0..<plan.groupCount).map { Float16Codec.load(raw.baseAddress!, index: $0, type: plan.params.scaleType) }
        }
    }

    public func error(against original: [Float]) throws -> ErrorStats {
        let restored = try dequantized()
        return original.withUnsafeBufferPointer { r in restored.withUnsafeBufferPointer { a in ErrorStats.compare(reference: r, actual: a) } }
    }
}

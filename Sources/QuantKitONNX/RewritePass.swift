import QuantKit

/// What a pass may use while rewriting one layer.
public struct RewriteContext {
    /// Allocates names that collide with nothing in the model.
    public var names: ModelNames
    /// Reads externally stored weights (nil when the model has no folder, e.g. parsed from bytes).
    public let external: ExternalDataReader?
    /// The model's default-domain opset version, before any upgrade.
    public let opset: Int
    public let measureError: Bool
    public let threads: Int
    /// Band buffers reused from layer to layer.
    public let workspace = BandWorkspace()
    /// Buffers of new initializers, reused once a spool has written them.
    public let tensorBuffers = TensorBufferPool()
    /// Where new initializers go as soon as they are made (nil: they stay in memory until saved).
    public var spool: ExternalDataSpool?
    /// The weight of the layer being rewritten, quantized ahead of time by the converter (nil: none).
    var prefetched: (weight: String, request: WeightRequest, result: Result<QuantizedWeight, any Error>)?

    /// The layer's weight quantized as `request` asks (see `LinearLayer.quantizeWeight`): the
    /// converter's prefetched result when it has one for this request, else quantized now.
    public mutating func quantizedWeight(_ layer: LinearLayer, _ request: WeightRequest) throws -> QuantizedWeight {
        if let prefetched, prefetched.weight == layer.weight.name, prefetched.request.sameResult(as: request) {
            self.prefetched = nil
            return try prefetched.result.get()
        }
        var params = request.params
        params.threads = threads
        return try layer.quantizeWeight(params, shape: request.shape, transposed: request.transposed, external: external,
                                        measureError: measureError, workspace: workspace, pool: tensorBuffers)
    }
}

/// What a pass produced for one layer: the nodes that replace it (in order) and new initializers.
public struct Rewrite {
    public var nodes: [Onnx_NodeProto] = []
    public var initializers: [Onnx_TensorProto] = []
    /// Bytes of the new weight tensors (codes, scales, zero points).
    public var quantizedBytes = 0
    /// Quantization error of the weight (nil when not measured).
    public var error: ErrorStats?
    /// Operator sets the new nodes need: domain -> minimum version ("" is the default domain).
    public var opsets: [String: Int] = [:]

    public init() {}
}

/// One rewrite: match (done by `LinearLayer.match`), check, rewrite. Each conversion target is one
/// type conforming to this, in its own file.
public protocol LinearRewritePass {
    var target: ConversionTarget { get }
    /// Throws `SkipReason` when this pass cannot rewrite the layer with these settings (the
    /// converter reports it and leaves the node alone), or `QuantError` for a bad request that
    /// should stop the conversion (e.g. a format the target can never take).
    func check(_ layer: LinearLayer, _ settings: LayerSettings) throws
    /// The weight quantization `rewrite` will ask `RewriteContext.quantizedWeight` for, so that
    /// the converter can run it ahead, next to other layers' (nil: none; the default). Called
    /// only after `check` passed.
    func weightRequest(_ layer: LinearLayer, _ settings: LayerSettings) throws -> WeightRequest?
    func rewrite(_ layer: LinearLayer, _ settings: LayerSettings, _ context: inout RewriteContext) throws -> Rewrite
}

extension LinearRewritePass {
    public func weightRequest(_ layer: LinearLayer, _ settings: LayerSettings) throws -> WeightRequest? { nil }
}

extension Onnx_NodeProto {
    init(_ opType: String, domain: String = "", name: String, inputs: [String], outputs: [String], attributes: [Onnx_AttributeProto] = []) {
        self.init()
        self.opType = opType
        self.domain = domain
        self.name = name
        self.input = inputs
        self.output = outputs
        self.attribute = attributes
    }
}

extension Onnx_AttributeProto {
    static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(value)
        return a
    }

    static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = value
        return a
    }
}

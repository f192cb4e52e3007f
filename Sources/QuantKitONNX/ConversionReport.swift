import QuantKit

/// What a conversion did to each candidate node, and the totals: printed by the CLI, as text or JSON.
public struct ConversionReport: Sendable, Codable {
    public struct Layer: Sendable, Codable {
        public var node: String
        public var opType: String
        public var weight: String
        /// Graph nesting depth (0: the main graph; 1: a subgraph of If/Loop/Scan, ...).
        public var depth: Int
        public var role: LayerPolicy.Role
        public var k: Int
        public var n: Int
        /// nil when the node was left alone.
        public var settings: String?
        public var target: String?
        public var bytesBefore: Int
        public var bytesAfter: Int
        public var sqnrDB: Double?
        public var maxAbsError: Double?
        /// Why the node was left alone (nil when it was rewritten).
        public var skipped: String?
    }

    public var layers: [Layer] = []
    /// Size of the input and output model files (model and external data) in bytes.
    public var inputBytes = 0
    public var outputBytes = 0
    public var seconds = 0.0
    /// The default-domain opset before and after (raised by the QDQ target).
    public var opsetBefore = 0
    public var opsetAfter = 0
    /// Nodes whose signature changed when the opset was raised, rewritten to the new form.
    public var upgradedNodes: [String] = []
    /// Advice about the output that is not an error (printed after the summary).
    public var notes: [String] = []

    public var quantized: [Layer] { layers.filter { $0.skipped == nil } }
    public var skipped: [Layer] { layers.filter { $0.skipped != nil } }

    public init() {}
}

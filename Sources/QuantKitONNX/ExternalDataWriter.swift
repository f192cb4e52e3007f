#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FoundationEssentials
import QuantKit
import SwiftProtobuf

/// Where `ONNXModel.save` puts tensor data.
public enum ExternalDataPolicy: Sendable, Equatable {
    /// Everything in the model file; an error if that would pass the 2 GiB protobuf limit.
    case inline
    /// Every tensor with at least `sizeThreshold` bytes of raw data goes into one side file next
    /// to the output, named `location` (default: the output's file name + ".data").
    case external(location: String? = nil, sizeThreshold: Int = ExternalDataPolicy.defaultThreshold)
    /// External when the input kept tensors in side files or the model would pass 2 GiB inline.
    case automatic

    /// onnx's `convert_model_to_external_data` default.
    public static let defaultThreshold = 1024
    /// Tensors this large start at a multiple of `alignment` in the side file (ONNX Runtime's
    /// rule for memory-mapping them: 1 MiB threshold, 64 KiB allocation granularity).
    static let alignThreshold = 1 << 20
    static let alignment = 64 << 10
}

extension ONNXModel {
    /// Writes the model to `path` atomically, with tensor data placed by `externalData`.
    ///
    /// Tensors whose bytes are in an input side file or still in the input model file are read
    /// through `reader` (default: the one `load` made) and streamed to the output, never copied
    /// whole. With a side file, it is written to a temporary name, then the model; the side file
    /// is renamed into place first and the model last, so a model never names missing data. On
    /// failure both temporary files are removed. Without `overwrite`, an existing model or side
    /// file is an error (`ModelFileError.outputExists`) before anything is written.
    ///
    /// `sync`: when the files are forced to disk before they take their names (`OutputSync`).
    ///
    /// Returns the paths written: the model, then the side file if there is one.
    @discardableResult
    public func save(to path: String, overwrite: Bool = false, externalData policy: ExternalDataPolicy,
                     reader: ExternalDataReader? = nil, sync: OutputSync = .always) throws -> [String] {
        let reader = reader ?? dataReader
        switch policy {
        case .inline:
            let plan = try InlinePlan(proto, reader: reader)
            try plan.checkSize()
            try plan.write(to: path, overwrite: overwrite, sync: sync)
            return [path]
        case let .external(location, threshold):
            return try saveExternal(to: path, location: location, threshold: threshold, overwrite: overwrite, reader: reader, sync: sync)
        case .automatic:
            if let side = sideFile(for: policy) {
                return try saveExternal(to: path, location: side.location, threshold: side.threshold, overwrite: overwrite, reader: reader, sync: sync)
            }
            let plan = try InlinePlan(proto, reader: reader)
            if plan.total > Self.protobufLimit {
                return try saveExternal(to: path, location: nil, threshold: ExternalDataPolicy.defaultThreshold, overwrite: overwrite, reader: reader, sync: sync)
            }
            try plan.write(to: path, overwrite: overwrite, sync: sync)
            return [path]
        }
    }

    /// True when some tensor's bytes are in a side file.
    static func usesSideFiles(_ proto: Onnx_ModelProto) -> Bool {
        var copy = proto
        var found = false
        forEachTensor(in: &copy) { tensor in
            if ExternalDataReader.isInSideFile(tensor) { found = true }
        }
        return found
    }

    /// Visits the tensors onnx's external-data helpers visit, in their order: initializers of
    /// the graph and its subgraphs, then attribute tensors of the graph, subgraphs and functions.
    static func forEachTensor(in model: inout Onnx_ModelProto, _ body: (inout Onnx_TensorProto) throws -> Void) rethrows {
        if model.hasGraph {
            try forEachInitializer(in: &model.graph, body)
            try forEachAttributeTensor(in: &model.graph.node, body)
        }
        for f in model.functions.indices { try forEachAttributeTensor(in: &model.functions[f].node, body) }
    }

    static func forEachInitializer(in graph: inout Onnx_GraphProto, _ body: (inout Onnx_TensorProto) throws -> Void) rethrows {
        for i in graph.initializer.indices { try body(&graph.initializer[i]) }
        try forEachSubgraph(of: &graph.node) { try forEachInitializer(in: &$0, body) }
    }

    static func forEachAttributeTensor(in nodes: inout [Onnx_NodeProto], _ body: (inout Onnx_TensorProto) throws -> Void) rethrows {
        for n in nodes.indices {
            for a in nodes[n].attribute.indices {
                if nodes[n].attribute[a].hasT { try body(&nodes[n].attribute[a].t) }
                for t in nodes[n].attribute[a].tensors.indices { try body(&nodes[n].attribute[a].tensors[t]) }
                if nodes[n].attribute[a].type == .graph { try forEachAttributeTensor(in: &nodes[n].attribute[a].g.node, body) }
                if nodes[n].attribute[a].type == .graphs {
                    for g in nodes[n].attribute[a].graphs.indices { try forEachAttributeTensor(in: &nodes[n].attribute[a].graphs[g].node, body) }
                }
            }
        }
    }

    static func forEachSubgraph(of nodes: inout [Onnx_NodeProto], _ body: (inout Onnx_GraphProto) throws -> Void) rethrows {
        for n in nodes.indices {
            for a in nodes[n].attribute.indices {
                if nodes[n].attribute[a].type == .graph { try body(&nodes[n].attribute[a].g) }
                if nodes[n].attribute[a].type == .graphs {
                    for g in nodes[n].attribute[a].graphs.indices { try body(&nodes[n].attribute[a].graphs[g]) }
                }
            }
        }
    }

    static func externalBytes(_ tensor: Onnx_TensorProto, _ reader: ExternalDataReader?) throws -> UnsafeRawBufferPointer {
        guard let reader else {
            throw QuantError(.invalidModel, "tensor '\(tensor.name)' is stored externally, but no model folder is known to read it from")
        }
        return try reader.bytes(of: tensor)
    }

    /// How a model and its side file are synced: when either replaces a file, both are, so that a
    /// replaced model never ends up naming a side file lost to a power cut.
    static func pairSync(_ requested: OutputSync, replacingModel: Bool, replacingSide: Bool) -> OutputSync {
        replacingModel || replacingSide ? .always : requested
    }

    private func saveExternal(to path: String, location: String?, threshold: Int, overwrite: Bool,
                              reader: ExternalDataReader?, sync: OutputSync) throws -> [String] {
        let spool = try ExternalDataSpool(modelPath: path, location: location, threshold: threshold, overwrite: overwrite, sync: sync)
        return try save(spool: spool, reader: reader)
    }

    /// Writes the model with external data into `spool` (which may already hold tensors a
    /// conversion put there) and commits it: every other tensor is placed as `save` with
    /// `.external` places it. Returns the paths written: the model, then the side file if any
    /// tensor is in it.
    @discardableResult
    public func save(spool: ExternalDataSpool, reader: ExternalDataReader? = nil) throws -> [String] {
        let reader = reader ?? dataReader
        try spool.finishWrites()
        var proto = self.proto
        var usesSideFile = false
        if proto.hasGraph {
            try Self.forEachInitializer(in: &proto.graph) { usesSideFile = try spool.place(&$0, initializer: true, reader: reader) || usesSideFile }
            try Self.forEachAttributeTensor(in: &proto.graph.node) { usesSideFile = try spool.place(&$0, initializer: false, reader: reader) || usesSideFile }
        }
        for f in proto.functions.indices {
            try Self.forEachAttributeTensor(in: &proto.functions[f].node) { usesSideFile = try spool.place(&$0, initializer: false, reader: reader) || usesSideFile }
        }
        return try spool.commit(model: try ONNXModel(proto).serializedBytesChecked(), usesSideFile: usesSideFile)
    }

    /// Whether `save` with `policy` writes a side file whatever a conversion changes, and with
    /// which name and threshold: `.external`, or `.automatic` for a model that has side files.
    /// nil when it depends on the converted model's size (`.automatic`) or never (`.inline`).
    public func sideFile(for policy: ExternalDataPolicy) -> (location: String?, threshold: Int)? {
        switch policy {
        case .inline: return nil
        case let .external(location, threshold): return (location, threshold)
        case .automatic:
            return loadedWithExternalData || Self.usesSideFiles(proto) ? (nil, ExternalDataPolicy.defaultThreshold) : nil
        }
    }

    /// Copies mapped bytes to `out` in slices, dropping each slice's pages once written so that
    /// resident memory stays bounded however big the tensor is.
    static func stream(_ bytes: UnsafeRawBufferPointer, to out: AtomicOutput, reader: ExternalDataReader?) throws {
        let slice = 64 << 20
        var start = 0
        while start < bytes.count {
            let part = UnsafeRawBufferPointer(rebasing: bytes[start..<min(start + slice, bytes.count)])
            try out.write(part)
            reader?.release(part)
            start += slice
        }
    }

    /// The serialized (small) model; the 2 GiB limit reported with a hint.
    func serializedBytesChecked() throws -> [UInt8] {
        let bytes = try InlinePlan.serialize(proto)
        guard bytes.count <= Self.protobufLimit else { throw InlinePlan.tooBig(bytes.count) }
        return bytes
    }
}

/// The inline output as a list of pieces: small serialized parts, and the raw data of large
/// main-graph initializers, which is written straight from its mapping or `Data` at the field
/// position protobuf's writers use, so the bytes equal a normal serialization.
struct InlinePlan {
    enum Piece {
        case bytes([UInt8])
        case mapped(UnsafeRawBufferPointer)
        case data(Data)
    }

    var pieces: [Piece] = []
    var total = 0
    let reader: ExternalDataReader?

    /// Initializers with this much raw data are spliced rather than serialized (no copy).
    static let spliceBytes = 64 << 10

    init(_ model: Onnx_ModelProto, reader: ExternalDataReader?) throws {
        self.reader = reader
        var proto = model
        // External tensors outside the main graph's initializers are few and small: read them in.
        let initializers = proto.graph.initializer
        proto.graph.initializer = []
        try ONNXModel.forEachTensor(in: &proto) { tensor in
            if tensor.dataLocation == .external {
                tensor.rawData = Data(try ONNXModel.externalBytes(tensor, reader))
                tensor.clearDataLocation()
                tensor.externalData = []
            }
        }
        proto.graph.initializer = initializers
        let spliced = initializers.contains { $0.dataLocation == .external || $0.rawData.count >= Self.spliceBytes }
        guard proto.hasGraph, spliced else {
            let bytes = try Self.serialize(proto)
            pieces = [.bytes(bytes)]
            total = bytes.count
            return
        }

        var outer = proto
        outer.clearGraph()
        let modelBytes = try Self.serialize(outer)
        var bare = proto.graph
        bare.initializer = []
        let graphBytes = try Self.serialize(bare)
        guard let modelSplit = Wire.splitPoint(modelBytes, after: 7), let graphSplit = Wire.splitPoint(graphBytes, after: 5) else {
            throw QuantError(.internalError, "cannot split the serialized model")
        }
        var graphPieces: [Piece] = [.bytes(Array(graphBytes[..<graphSplit]))]
        var graphLength = graphBytes.count
        for tensor in initializers {
            var head: [UInt8] = [5 << 3 | 2]
            if tensor.dataLocation == .external || tensor.rawData.count >= Self.spliceBytes {
                var rest = tensor
                let source: Piece
                let count: Int
                if tensor.dataLocation == .external {
                    let bytes = try ONNXModel.externalBytes(tensor, reader)
                    source = .mapped(bytes)
                    count = bytes.count
                    rest.clearDataLocation()
                    rest.externalData = []
                } else {
                    source = .data(tensor.rawData)
                    count = tensor.rawData.count
                }
                rest.clearRawData()
                let restBytes = try Self.serialize(rest)
                guard let split = Wire.splitPoint(restBytes, after: 9) else {
                    throw QuantError(.internalError, "cannot split serialized tensor '\(tensor.name)'")
                }
                let tensorLength = restBytes.count + 1 + Wire.varintSize(count) + count
                Wire.appendVarint(UInt64(tensorLength), to: &head)
                head += restBytes[..<split]
                head.append(9 << 3 | 2)
                Wire.appendVarint(UInt64(count), to: &head)
                graphPieces += [.bytes(head), source, .bytes(Array(restBytes[split...]))]
                graphLength += 1 + Wire.varintSize(tensorLength) + tensorLength
            } else {
                let bytes = try Self.serialize(tensor)
                Wire.appendVarint(UInt64(bytes.count), to: &head)
                graphPieces.append(.bytes(head + bytes))
                graphLength += 1 + Wire.varintSize(bytes.count) + bytes.count
            }
        }
        graphPieces.append(.bytes(Array(graphBytes[graphSplit...])))
        var start = Array(modelBytes[..<modelSplit])
        start.append(7 << 3 | 2)
        Wire.appendVarint(UInt64(graphLength), to: &start)
        pieces = [.bytes(start)] + graphPieces + [.bytes(Array(modelBytes[modelSplit...]))]
        total = start.count + graphLength + (modelBytes.count - modelSplit)
    }

    func checkSize() throws {
        if total > ONNXModel.protobufLimit { throw Self.tooBig(total) }
    }

    static func tooBig(_ size: Int) -> QuantError {
        QuantError(
            .invalidModel,
            "the model would be \(size) bytes in one file, over the 2 GiB protobuf limit: save it with external data")
    }

    static func serialize(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        do {
            return try message.serializedBytes()
        } catch BinaryEncodingError.missingRequiredFields {
            // The ONNX schema has no required fields: swift-protobuf reports a message over the
            // 2 GiB protobuf limit this way (checked before it allocates anything).
            throw tooBig(Int(Int32.max))
        } catch {
            throw QuantError(.invalidModel, "the model cannot be serialized: \(error)")
        }
    }

    func write(to path: String, overwrite: Bool, sync: OutputSync) throws {
        let out = try AtomicOutput(path: path, overwrite: overwrite, sync: sync)
        for piece in pieces {
            switch piece {
            case .bytes(let bytes): try out.write(bytes)
            case .mapped(let bytes): try ONNXModel.stream(bytes, to: out, reader: reader)
            case .data(let data): try data.withUnsafeBytes { try out.write($0) }
            }
        }
        try out.finish()
        try out.commit(overwrite: overwrite)
    }

    /// All pieces in one array (for `ONNXModel.serializedBytes()`: small models, tests).
    func joined() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(total)
        for piece in pieces {
            switch piece {
            case .bytes(let bytes): out += bytes
            case .mapped(let bytes): out += bytes
            case .data(let data): out += data
            }
        }
        return out
    }
}

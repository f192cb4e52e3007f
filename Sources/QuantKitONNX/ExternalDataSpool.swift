#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FoundationEssentials
import QuantKit

/// The side file of a model being saved with external data, open under a temporary name from
/// the start, so that tensors can go into it before the model is complete.
///
/// `ONNXModel.save` with an external policy makes one and fills it at the end. A converter given
/// one (`Converter.convert(_:external:spool:)`) writes each quantized tensor into it as soon as
/// its layer is done, and frees the tensor's buffer for the next layer: the output is never held
/// in memory whole, and the next layer's buffers reuse pages already mapped instead of faulting
/// in fresh ones (on SmolLM2, 131 MB of output, that was about 0.03 s of a 0.3 s conversion).
/// `ONNXModel.save(spool:reader:)` then adds the rest and takes both final names.
///
/// Nothing is visible under the final names before that commit; a spool dropped before it (a
/// failed conversion) removes its temporary file.
public final class ExternalDataSpool {
    public let modelPath: String
    /// The side file's name (in the model's folder), and its path.
    public let location: String
    public let sidePath: String
    /// Tensors with at least this many bytes go to the side file.
    let threshold: Int
    let overwrite: Bool
    /// The sync policy of both files (see `ONNXModel.pairSync`).
    let sync: OutputSync
    private let side: AtomicOutput
    /// Tensors `take` moved here: name -> the external-data entries it gave them.
    private var taken: [String: [Onnx_StringStringEntryProto]] = [:]
    /// True once a write to the side file failed (callers report it as a write failure, not as
    /// a conversion error).
    public private(set) var writeFailed = false

    /// Checks both output paths (`ModelFileError.outputExists` without `overwrite`) and creates
    /// the temporary side file. `location`: default the model's file name + ".data".
    public init(modelPath: String, location: String? = nil, threshold: Int = ExternalDataPolicy.defaultThreshold,
                overwrite: Bool, sync: OutputSync = .always) throws {
        let (folder, name) = FileIO.split(modelPath)
        let location = location ?? "\(name).data"
        try Self.checkSideFileName(location)
        let sidePath = "\(folder)/\(location)"
        guard location != name else {
            throw QuantError(.invalidArgument, "the external data file '\(sidePath)' cannot be the model file itself")
        }
        let replacingModel = try AtomicOutput.checkTarget(modelPath, overwrite: overwrite)
        let replacingSide = try AtomicOutput.checkTarget(sidePath, overwrite: overwrite)
        self.sync = ONNXModel.pairSync(sync, replacingModel: replacingModel, replacingSide: replacingSide)
        (self.modelPath, self.location, self.sidePath, self.threshold, self.overwrite) = (modelPath, location, sidePath, threshold, overwrite)
        side = try AtomicOutput(path: sidePath, overwrite: overwrite, sync: self.sync)
    }

    /// A side-file name: one plain file name in the output's folder.
    static func checkSideFileName(_ location: String) throws {
        guard !location.isEmpty, location != ".", location != "..", !location.contains("/"),
              !location.contains("\0"), !location.contains("\\") else {
            throw QuantError(.invalidArgument, "external data location '\(location)' must be a plain file name (it goes in the output's folder)")
        }
    }

    /// Moves a new initializer's raw data into the side file now, when saving would put it there,
    /// and makes the tensor name its place in the file. Its buffer is released with the old value.
    public func take(_ tensor: inout Onnx_TensorProto) throws {
        guard tensor.dataLocation != .external, tensor.hasRawData, tensor.rawData.count >= threshold else { return }
        try place(&tensor, initializer: true, reader: nil)
        taken[tensor.name] = tensor.externalData
    }

    /// Puts a tensor where saving puts it, like onnx's save (convert_attribute=False): initializers
    /// with `threshold` bytes or more go to the side file, attribute tensors stay there only when
    /// the input had them there, small tensors from the input's side file come back inline.
    /// Returns whether the tensor's data is in the side file.
    func place(_ tensor: inout Onnx_TensorProto, initializer: Bool, reader: ExternalDataReader?) throws -> Bool {
        if tensor.dataLocation == .external, let entries = taken[tensor.name], tensor.externalData == entries { return true }
        var mapped: UnsafeRawBufferPointer?
        if tensor.dataLocation == .external {
            let bytes = try ONNXModel.externalBytes(tensor, reader)
            guard bytes.count >= threshold else {
                tensor.rawData = Data(bytes)
                tensor.clearDataLocation()
                tensor.externalData = []
                return false
            }
            mapped = bytes
        } else if !initializer || !tensor.hasRawData || tensor.rawData.count < threshold {
            return false
        }
        let count = mapped?.count ?? tensor.rawData.count
        do {
            if count >= ExternalDataPolicy.alignThreshold {
                let pad = (ExternalDataPolicy.alignment - side.size % ExternalDataPolicy.alignment) % ExternalDataPolicy.alignment
                try side.writeZeros(pad)
            }
            let offset = side.size
            if let mapped {
                try ONNXModel.stream(mapped, to: side, reader: reader)
            } else {
                try tensor.rawData.withUnsafeBytes { try side.write($0) }
            }
            tensor.clearRawData()
            tensor.dataLocation = .external
            tensor.externalData = [("location", location), ("offset", String(offset)), ("length", String(count))].map { key, value in
                var entry = Onnx_StringStringEntryProto()
                entry.key = key
                entry.value = value
                return entry
            }
        } catch {
            writeFailed = true
            throw error
        }
        return true
    }

    /// Writes the model file and gives both files their names: the side file first, the model
    /// last, so a model never names missing data. The side file is dropped when no tensor of the
    /// model is in it. Returns the paths written.
    func commit(model modelBytes: [UInt8], usesSideFile: Bool) throws -> [String] {
        let model = try AtomicOutput(path: modelPath, overwrite: overwrite, sync: sync)
        try model.write(modelBytes)
        try model.finish()
        if usesSideFile {
            try side.finish()
            try side.commit(overwrite: overwrite)
        }
        do {
            try model.commit(overwrite: overwrite)
        } catch {
            if usesSideFile && !overwrite { unlink(sidePath) }  // ours: it did not exist before
            throw error
        }
        return usesSideFile ? [modelPath, sidePath] : [modelPath]
    }
}

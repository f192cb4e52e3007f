#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import FoundationEssentials
import QuantKit
import Synchronization

/// The side file of a model being saved with external data, open under a temporary name from
/// the start, so that tensors can go into it before the model is complete.
///
/// `ONNXModel.save` with an external policy makes one and fills it at the end. A converter given
/// one (`Converter.convert(_:external:spool:)`) hands it each quantized tensor as soon as its
/// layer is done; a writer thread copies it to the file while the next layers are quantized, and
/// frees its buffer. The output is never held in memory whole (at most `pendingLimit` bytes wait),
/// later layers reuse pages already mapped instead of faulting in fresh ones, and the quantizer's
/// threads do not wait for the copy (on SmolLM2, 131 MB of output: 0.03 s of faults and 0.03 s of
/// copying, of a 0.3 s conversion). `ONNXModel.save(spool:reader:)` then waits for the writer,
/// adds the rest and takes both final names.
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
    /// Writes of taken tensors, in order. Its jobs hold the file and `firstFailure`, not the
    /// spool, so that dropping the spool (deinit) can wait for them and then remove the temporary
    /// file at once.
    private let writer = DispatchQueue(label: "quantkit.external-data-spool")
    private final class FailureBox: Sendable { let error = Mutex<(any Error)?>(nil) }
    /// The first write error.
    private let firstFailure = FailureBox()
    /// The side file's size once every queued write is done.
    private var reserved = 0
    /// Megabytes queued and not yet written, at most `pendingLimit` (a semaphore of 1 MB units).
    private let pendingUnits = DispatchSemaphore(value: ExternalDataSpool.pendingLimit >> 20)
    static let pendingLimit = 64 << 20

    /// True once a write to the side file failed (callers report it as a write failure, not as
    /// a conversion error).
    public var writeFailed: Bool { firstFailure.error.withLock { $0 != nil } }

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

    /// Queues a new initializer's raw data for the side file, when saving would put it there, and
    /// makes the tensor name its place in the file; its buffer is freed once written. Waits while
    /// more than `pendingLimit` bytes are queued. Throws the error of an earlier write, if any.
    public func take(_ tensor: inout Onnx_TensorProto) throws {
        guard tensor.dataLocation != .external, tensor.hasRawData, tensor.rawData.count >= threshold else { return }
        try throwFirstFailure()
        let bytes = tensor.rawData
        let pad = Self.padding(before: bytes.count, at: reserved)
        let offset = reserved + pad
        reserved = offset + bytes.count
        tensor.clearRawData()
        setExternal(&tensor, offset: offset, count: bytes.count)
        taken[tensor.name] = tensor.externalData

        let units = min(max(bytes.count >> 20, 1), Self.pendingLimit >> 20)
        for _ in 0..<units { pendingUnits.wait() }
        writer.async { [side, firstFailure, pendingUnits] in
            defer { for _ in 0..<units { pendingUnits.signal() } }
            guard firstFailure.error.withLock({ $0 == nil }) else { return }
            do {
                try side.writeZeros(pad)
                try bytes.withUnsafeBytes { try side.write($0) }
            } catch {
                firstFailure.error.withLock { $0 = $0 ?? error }
            }
        }
    }

    /// Throws the first write error seen so far (without waiting for queued writes).
    private func throwFirstFailure() throws {
        if let error = firstFailure.error.withLock({ $0 }) { throw error }
    }

    /// Waits for the queued writes; throws the first one's error.
    public func finishWrites() throws {
        writer.sync {}
        try throwFirstFailure()
    }

    deinit {
        writer.sync {}  // the jobs release the file, whose deinit removes it unless committed
    }

    /// Zeros before a tensor of `count` bytes written at `offset`: large tensors start at a
    /// multiple of `ExternalDataPolicy.alignment` (ONNX Runtime maps them).
    private static func padding(before count: Int, at offset: Int) -> Int {
        guard count >= ExternalDataPolicy.alignThreshold else { return 0 }
        return (ExternalDataPolicy.alignment - offset % ExternalDataPolicy.alignment) % ExternalDataPolicy.alignment
    }

    private func setExternal(_ tensor: inout Onnx_TensorProto, offset: Int, count: Int) {
        tensor.dataLocation = .external
        tensor.externalData = [("location", location), ("offset", String(offset)), ("length", String(count))].map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
    }

    /// Puts a tensor where saving puts it, like onnx's save (convert_attribute=False): initializers
    /// with `threshold` bytes or more go to the side file, attribute tensors stay there only when
    /// the input had them there, small tensors from the input's side file come back inline.
    /// Returns whether the tensor's data is in the side file. Call `finishWrites` first.
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
            try side.writeZeros(Self.padding(before: count, at: side.size))
            let offset = side.size
            if let mapped {
                try ONNXModel.stream(mapped, to: side, reader: reader)
            } else {
                try tensor.rawData.withUnsafeBytes { try side.write($0) }
            }
            tensor.clearRawData()
            setExternal(&tensor, offset: offset, count: count)
        } catch {
            firstFailure.error.withLock { $0 = $0 ?? error }
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

/// Protobuf wire-format reading and writing, just enough to handle large tensors without parsing
/// them: loading leaves big `raw_data` in the mapped model file (see `WireScan.skeleton`), saving
/// splices it back in (see `InlinePlan`).
///
/// Field numbers used (onnx.proto): ModelProto.graph = 7, GraphProto.initializer = 5,
/// TensorProto.raw_data = 9, .external_data = 13 (StringStringEntryProto: key = 1, value = 2),
/// .data_location = 14 (EXTERNAL = 1).
enum Wire {
    static let lengthDelimited: UInt64 = 2

    struct Field {
        let number: UInt64
        let wireType: UInt64
        /// The whole field, tag included.
        let range: Range<Int>
        /// The payload of a length-delimited field.
        let payload: Range<Int>
    }

    /// The top-level fields of the message in `bytes[range]`; nil when the bytes are not valid
    /// protobuf wire format (groups included: ONNX has none).
    static func fields(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> [Field]? {
        var fields: [Field] = []
        var pos = range.lowerBound
        while pos < range.upperBound {
            let start = pos
            guard let tag = varint(bytes, &pos, range.upperBound), tag >> 3 != 0 else { return nil }
            let wireType = tag & 7
            var payload = pos..<pos
            switch wireType {
            case 0: guard varint(bytes, &pos, range.upperBound) != nil else { return nil }
            case 1: pos += 8
            case 5: pos += 4
            case 2:
                guard let length = varint(bytes, &pos, range.upperBound), length <= UInt64(range.upperBound - pos) else { return nil }
                payload = pos..<(pos + Int(length))
                pos += Int(length)
            default: return nil
            }
            guard pos <= range.upperBound else { return nil }
            fields.append(Field(number: tag >> 3, wireType: wireType, range: start..<pos, payload: payload))
        }
        return fields
    }

    static func varint(_ bytes: UnsafeRawBufferPointer, _ pos: inout Int, _ end: Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while pos < end && shift < 64 {
            let byte = bytes[pos]
            pos += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }

    static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func varintSize(_ value: Int) -> Int {
        var v = UInt64(value)
        var n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    static func appendTag(_ number: UInt64, _ wireType: UInt64, to out: inout [UInt8]) {
        appendVarint(number << 3 | wireType, to: &out)
    }

    static func appendBytesField(_ number: UInt64, _ payload: [UInt8], to out: inout [UInt8]) {
        appendTag(number, lengthDelimited, to: &out)
        appendVarint(UInt64(payload.count), to: &out)
        out += payload
    }

    /// Where a field numbered above `number` first starts in a serialized message: the place
    /// where a field `number` would go when writing fields in number order (swift-protobuf writes
    /// known fields in order, unknown ones last).
    static func splitPoint(_ bytes: [UInt8], after number: UInt64) -> Int? {
        bytes.withUnsafeBytes { raw in
            guard let fields = fields(raw, 0..<raw.count) else { return nil }
            return fields.first(where: { $0.number > number })?.range.lowerBound ?? raw.count
        }
    }
}

/// Builds a small copy of a model's wire bytes in which every large `raw_data` of a main-graph
/// initializer is replaced by an external-data reference into the model file itself
/// (`ExternalDataReader.modelFileLocation`, with the byte offset in the file). Parsing that copy
/// costs memory for the small fields only; the weights stay in the page cache of the mapping.
enum WireScan {
    /// Tensors with less raw data than this stay inline (copied by the parser).
    static let minimumBytes = 64 << 10

    /// nil when no tensor qualifies or the bytes are not well-formed (the parser then reports).
    static func skeleton(of file: UnsafeRawBufferPointer, minimum: Int = minimumBytes) -> [UInt8]? {
        guard let modelFields = Wire.fields(file, 0..<file.count) else { return nil }
        var out: [UInt8] = []
        var changed = false
        for field in modelFields {
            if field.number == 7, field.wireType == Wire.lengthDelimited,
               let graph = graphSkeleton(file, field.payload, minimum) {
                Wire.appendTag(7, Wire.lengthDelimited, to: &out)
                Wire.appendVarint(UInt64(graph.count), to: &out)
                out += graph
                changed = true
            } else {
                out += file[field.range]
            }
        }
        return changed ? out : nil
    }

    static func graphSkeleton(_ file: UnsafeRawBufferPointer, _ range: Range<Int>, _ minimum: Int) -> [UInt8]? {
        guard let fields = Wire.fields(file, range) else { return nil }
        var out: [UInt8] = []
        var changed = false
        for field in fields {
            if field.number == 5, field.wireType == Wire.lengthDelimited,
               let tensor = tensorSkeleton(file, field.payload, minimum) {
                Wire.appendBytesField(5, tensor, to: &out)
                changed = true
            } else {
                out += file[field.range]
            }
        }
        return changed ? out : nil
    }

    /// Only a tensor with exactly one large `raw_data` and no external-data fields is changed, so
    /// that writing it back inline reproduces the original bytes.
    static func tensorSkeleton(_ file: UnsafeRawBufferPointer, _ range: Range<Int>, _ minimum: Int) -> [UInt8]? {
        guard let fields = Wire.fields(file, range) else { return nil }
        let raws = fields.filter { $0.number == 9 }
        guard raws.count == 1, let raw = raws.first, raw.wireType == Wire.lengthDelimited,
              raw.payload.count >= minimum,
              !fields.contains(where: { $0.number == 13 || $0.number == 14 }) else { return nil }
        var out: [UInt8] = []
        for field in fields where field.number != 9 {
            out += file[field.range]
        }
        for (key, value) in [("location", ExternalDataReader.modelFileLocation),
                             ("offset", String(raw.payload.lowerBound)),
                             ("length", String(raw.payload.count))] {
            var entry: [UInt8] = []
            Wire.appendBytesField(1, Array(key.utf8), to: &entry)
            Wire.appendBytesField(2, Array(value.utf8), to: &entry)
            Wire.appendBytesField(13, entry, to: &out)
        }
        Wire.appendTag(14, 0, to: &out)
        Wire.appendVarint(1, to: &out)  // data_location: EXTERNAL
        return out
    }
}

/// The shift that brings the byte codes of `count` elements (stored code c held as packed(c)) into
/// 0...128, their lowest value, or nil when they span more than 129 values (or there are none).
/// Such weights (7-bit, like ONNX Runtime's reduce_range, whose int8 codes are -64...64) go in as
/// PackedMatrix.narrowBytes.
func narrowShift(_ codes: UnsafePointer<UInt8>, count: Int, packed: (Int) -> Int32) -> Int32? {
    let table = (0..<256).map(packed)
    guard let (low, high) = packedRange(codes, count: count, table: table), high - low <= 128 else { return nil }
    return low
}

/// Lowest and highest table[c] over the codes present, nil for none.
func packedRange(_ codes: UnsafePointer<UInt8>, count: Int, table: [Int32]) -> (low: Int32, high: Int32)? {
    guard count > 0 else { return nil }
    // Integer codes decode in the order of the byte read as unsigned (uint8) or as signed (int8:
    // unsigned with the top bit flipped). Then the extreme codes give the range, and finding them
    // is one pass the compiler vectorises (packing 11008 x 4096 int8 took 51 ms instead of 80).
    for flip: UInt8 in [0, 0x80] where (1..<256).allSatisfy({ table[$0 ^ Int(flip)] > table[($0 - 1) ^ Int(flip)] }) {
        let (low, high) = byteRange(codes, count: count, flip: flip)
        return (table[Int(low ^ flip)], table[Int(high ^ flip)])
    }
    var seen = [Bool](repeating: false, count: 256)
    seen.withUnsafeMutableBufferPointer { s in
        for i in 0..<count { s[Int(codes[i])] = true }
    }
    let values = (0..<256).filter { seen[$0] }.map { table[$0] }
    return (values.min()!, values.max()!)
}

/// Lowest and highest of codes[i] ^ flip.
private func byteRange(_ codes: UnsafePointer<UInt8>, count: Int, flip: UInt8) -> (UInt8, UInt8) {
    var low: UInt8 = .max, high: UInt8 = 0
    for i in 0..<count {
        let v = codes[i] ^ flip
        low = min(low, v)
        high = max(high, v)
    }
    return (low, high)
}

/// How the packer turns a stored code into the packed one (PackedMatrix.fillBlock).
enum CodeMapping {
    /// packed = (stored + r) mod 2^bits, for nibble and byte codes. This covers codes kept as they
    /// are (r = 0: MatMulNBits' unsigned nibbles, NF4, FP4), signed codes (int4: r = 8, int8:
    /// r = 128) and shifted 7-bit bytes, so those go a word at a time without a table lookup.
    case rotation(UInt8)
    /// packed = table[stored] (fp16 bits for 8-bit minifloats and codebooks).
    case table(UnsafePointer<UInt32>)

    /// The packed code of one stored code (setCode keeps its low bits).
    @inline(__always) func packed(_ code: UInt8) -> Int32 {
        switch self {
        case .rotation(let r): return Int32(code &+ r)
        case .table(let table): return Int32(bitPattern: table[Int(code)])
        }
    }

    /// The rotation that `table` is, on codes of `bits` bits, or nil when it is none. Packed values
    /// are compared in their low `bits` bits only: that is all the packer stores, and a table entry
    /// for a code that never occurs may lie outside them (7-bit bytes shifted below zero).
    static func rotation(of table: UnsafePointer<UInt32>, bits: Int) -> UInt8? {
        guard bits == 4 || bits == 8 else { return nil }
        let mask = UInt32(1 << bits - 1)
        let r = table[0] & mask
        for c in 0..<(1 << bits) where table[c] & mask != (UInt32(c) + r) & mask { return nil }
        return UInt8(r)
    }

    /// Four nibble codes, one per byte (each below 16), rotated by r mod 16 in each byte: no carry
    /// can cross a byte, as 15 + 15 < 256.
    @inline(__always) static func rotateNibbles(_ word: UInt32, by r: UInt8) -> UInt32 {
        (word &+ UInt32(r & 15) &* 0x0101_0101) & 0x0F0F_0F0F
    }

    /// Four byte codes, each plus r mod 256: the low seven bits add without reaching the next byte,
    /// and the top bit of each byte is the exclusive-or of the two top bits and that carry.
    @inline(__always) static func rotateBytes(_ word: UInt32, by r: UInt8) -> UInt32 {
        let rs = UInt32(r) &* 0x0101_0101
        return ((word & 0x7F7F_7F7F) &+ (rs & 0x7F7F_7F7F)) ^ ((word ^ rs) & 0x8080_8080)
    }
}

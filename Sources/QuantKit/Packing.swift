/// The byte layouts of packed codes. One code per byte goes in; packed bytes come out.
enum Packing {
    /// ONNX order: codes of `bits` each, LSB first (first element in the low bits), last byte
    /// zero-padded. Byte ranges of `bytes` are independent, so callers may split the work.
    static func packLSB(_ codes: UnsafePointer<UInt8>, count: Int, bits: Int, into out: UnsafeMutablePointer<UInt8>, bytes: Range<Int>) {
        switch bits {
        case 8:
            for i in bytes { out[i] = codes[i] }
        case 4:
            for i in bytes {
                let lo = codes[2 * i], hi = 2 * i + 1 < count ? codes[2 * i + 1] : 0
                out[i] = (lo & 0xF) | (hi << 4)
            }
        case 2:
            for i in bytes {
                var byte: UInt8 = 0
                for j in 0..<4 where 4 * i + j < count { byte |= (codes[4 * i + j] & 3) << UInt8(2 * j) }
                out[i] = byte
            }
        default:
            // Any width: gather the bits of byte i from the codes that overlap it.
            let mask = UInt32(1 << bits) - 1
            for i in bytes {
                var byte: UInt32 = 0
                let firstBit = i * 8
                var element = firstBit / bits
                while element < count && element * bits < firstBit + 8 {
                    let shift = element * bits - firstBit
                    let code = UInt32(codes[element]) & mask
                    byte |= shift >= 0 ? code << UInt32(shift) : code >> UInt32(-shift)
                    element += 1
                }
                out[i] = UInt8(truncatingIfNeeded: byte)
            }
        }
    }

    /// Inverse of packLSB for the codes in `elements`.
    static func unpackLSB(_ bytes: UnsafePointer<UInt8>, bits: Int, into codes: UnsafeMutablePointer<UInt8>, elements: Range<Int>) {
        switch bits {
        case 8:
            for e in elements { codes[e] = bytes[e] }
        case 4:
            // Whole bytes go two codes at a time, a loop the compiler vectorises; odd ends alone.
            // Packing an 11008 x 4096 MatMulNBits weight took 56 ms this way, 68 element by element.
            var e = elements.lowerBound
            if e < elements.upperBound, e & 1 == 1 { codes[e] = bytes[e >> 1] >> 4; e += 1 }
            let pairs = (elements.upperBound - e) >> 1
            unpackNibblePairs(bytes + (e >> 1), into: codes + e, count: pairs)
            e += 2 * pairs
            if e < elements.upperBound { codes[e] = bytes[e >> 1] & 0xF }
        case 2:
            for e in elements { codes[e] = (bytes[e >> 2] >> UInt8((e & 3) * 2)) & 3 }
        default:
            let mask = UInt32(1 << bits) - 1
            for e in elements {
                let bit = e * bits
                let lo = UInt32(bytes[bit >> 3])
                let hi = (bit & 7) + bits > 8 ? UInt32(bytes[(bit >> 3) + 1]) << 8 : 0
                codes[e] = UInt8(truncatingIfNeeded: ((lo | hi) >> UInt32(bit & 7)) & mask)
            }
        }
    }

    /// The eight nibbles of a little-endian word, low nibble first, one per byte of the result:
    /// four bytes of an LSB-first 4-bit buffer as unpackLSB would write them.
    @inline(__always) static func nibblesToBytes(_ word: UInt32) -> UInt64 {
        var t = UInt64(word)
        t = (t | t << 16) & 0x0000_FFFF_0000_FFFF  // 16-bit halves into 32-bit slots
        t = (t | t << 8) & 0x00FF_00FF_00FF_00FF  // bytes into 16-bit slots
        return (t | t << 4) & 0x0F0F_0F0F_0F0F_0F0F  // a slot's byte 0xHL into bytes L, H
    }

    /// codes[2i] = low nibble of bytes[i], codes[2i + 1] = its high nibble, for i < count.
    private static func unpackNibblePairs(_ bytes: UnsafePointer<UInt8>, into codes: UnsafeMutablePointer<UInt8>, count: Int) {
        var i = 0
        while i < count {
            let byte = bytes[i]
            codes[i &* 2] = byte & 0xF
            codes[i &* 2 &+ 1] = byte >> 4
            i &+= 1
        }
    }

    /// bitsandbytes order: first element in the HIGH nibble.
    /// An odd count pads the last low nibble with `padding` (bitsandbytes pads with the code of 0.0).
    static func packHighNibbleFirst(_ codes: UnsafePointer<UInt8>, count: Int, padding: UInt8, into out: UnsafeMutablePointer<UInt8>, bytes: Range<Int>) {
        for i in bytes {
            let first = codes[2 * i], second = 2 * i + 1 < count ? codes[2 * i + 1] : padding
            out[i] = (first << 4) | (second & 0xF)
        }
    }

    static func unpackHighNibbleFirst(_ bytes: UnsafePointer<UInt8>, into codes: UnsafeMutablePointer<UInt8>, elements: Range<Int>) {
        for e in elements { codes[e] = (e & 1) == 0 ? bytes[e >> 1] >> 4 : bytes[e >> 1] & 0xF }
    }

    /// MatMulNBits B for rows `rows` of an [N, K] code matrix: [N, blocks, block*bits/8], each
    /// block LSB-first and padded with code 0 past K.
    static func packMatMulNBits(_ codes: UnsafePointer<UInt8>, k: Int, block: Int, bits: Int, into out: UnsafeMutablePointer<UInt8>, rows: Range<Int>) {
        let blocks = (k + block - 1) / block
        let blockBytes = block * bits / 8
        var padded = [UInt8](repeating: 0, count: block)
        padded.withUnsafeMutableBufferPointer { scratch in
            for n in rows {
                for b in 0..<blocks {
                    let start = b * block, length = min(block, k - start)
                    for j in 0..<block { scratch[j] = j < length ? codes[n * k + start + j] : 0 }
                    packLSB(scratch.baseAddress!, count: block, bits: bits, into: out + (n * blocks + b) * blockBytes, bytes: 0..<blockBytes)
                }
            }
        }
    }

    static func unpackMatMulNBits(_ bytes: UnsafePointer<UInt8>, k: Int, block: Int, bits: Int, into codes: UnsafeMutablePointer<UInt8>, rows: Range<Int>) {
        let blocks = (k + block - 1) / block
        let blockBytes = block * bits / 8
        for n in rows {
            for b in 0..<blocks {
                let start = b * block, length = min(block, k - start)
                unpackLSB(bytes + (n * blocks + b) * blockBytes, bits: bits, into: codes + n * k + start, elements: 0..<length)
            }
        }
    }

    /// MatMulNBits zero points: per row, `blocks` codes LSB-first; unused slots hold 2^(bits-1).
    static func packMatMulNBitsZeroPoints(_ zps: UnsafePointer<UInt8>, rows: Int, blocks: Int, bits: Int, into out: UnsafeMutablePointer<UInt8>) {
        let perByte = 8 / bits
        let rowBytes = (blocks + perByte - 1) / perByte
        let padding = UInt8(1 << (bits - 1))
        for n in 0..<rows {
            for i in 0..<rowBytes {
                var byte: UInt8 = 0
                for j in 0..<perByte {
                    let b = i * perByte + j
                    let code = b < blocks ? zps[n * blocks + b] : padding
                    byte |= code << UInt8(j * bits)
                }
                out[n * rowBytes + i] = byte
            }
        }
    }

    static func unpackMatMulNBitsZeroPoints(_ bytes: UnsafePointer<UInt8>, rows: Int, blocks: Int, bits: Int, into zps: UnsafeMutablePointer<UInt8>) {
        let perByte = 8 / bits
        let rowBytes = (blocks + perByte - 1) / perByte
        for n in 0..<rows {
            unpackLSB(bytes + n * rowBytes, bits: bits, into: zps + n * blocks, elements: 0..<blocks)
        }
    }
}

public import Foundation

/// Measuring a received tone: level and frequency of 16-bit PCM, and the samples of a WAV file
/// a peer wrote. Shared by the suites that check audio at a receiving end.
public enum ToneMeasurement {
    /// RMS level in dB relative to full scale.
    public static func level(_ samples: ArraySlice<Int16>) -> Double {
        guard !samples.isEmpty else { return -200 }
        let sum = samples.reduce(0.0) { $0 + Double($1) * Double($1) }
        return 10 * log10(max(sum / Double(samples.count), 1e-20) / (32767.0 * 32767.0))
    }

    /// Frequency from zero crossings with linear interpolation: exact enough for a clean tone.
    public static func frequency(_ samples: ArraySlice<Int16>, sampleRate: Int) -> Double {
        var crossings: [Double] = []
        var last: Int16 = samples.first ?? 0
        var index = 0
        for sample in samples.dropFirst() {
            if last < 0 && sample >= 0 {
                crossings.append(Double(index) + Double(-Int(last)) / Double(Int(sample) - Int(last)))
            }
            last = sample
            index += 1
        }
        guard crossings.count >= 2 else { return 0 }
        return Double(crossings.count - 1) / ((crossings.last! - crossings.first!) / Double(sampleRate))
    }
}

/// 16-bit PCM of a RIFF/WAVE file (the `data` chunk; interleaved when it has several channels).
public func wavSamples(_ url: URL) throws -> [Int16] {
    let bytes = [UInt8](try Data(contentsOf: url))
    var offset = 12
    while offset + 8 <= bytes.count {
        let id = String(decoding: bytes[offset..<(offset + 4)], as: UTF8.self)
        let size = Int(bytes[offset + 4]) | Int(bytes[offset + 5]) << 8 | Int(bytes[offset + 6]) << 16 | Int(bytes[offset + 7]) << 24
        if id == "data" {
            let end = min(bytes.count, offset + 8 + size)
            return stride(from: offset + 8, to: end - 1, by: 2).map { Int16(bitPattern: UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8) }
        }
        offset += 8 + size + (size & 1)
    }
    throw PeerError("no data chunk in \(url.path)")
}

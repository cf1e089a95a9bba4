import CSpanDSP
import Foundation
import PeerTestSupport

/// Measuring audio in tests: tones in, frequency and level out, DTMF through spandsp's own
/// generator and detector (an implementation independent of the code under test).
enum AudioAnalysis {
    static func tone(frequency: Double, dBFS: Double, sampleRate: Int, seconds: Double) -> [Int16] {
        let amplitude = 32767 * pow(10, dBFS / 20) * 2.0.squareRoot()  // RMS dBFS of a sine
        let count = Int(Double(sampleRate) * seconds)
        return (0..<count).map { Int16((amplitude * sin(2 * .pi * frequency * Double($0) / Double(sampleRate))).rounded()) }
    }

    static func level(_ samples: ArraySlice<Int16>) -> Double { ToneMeasurement.level(samples) }

    static func frequency(_ samples: ArraySlice<Int16>, sampleRate: Int) -> Double {
        ToneMeasurement.frequency(samples, sampleRate: sampleRate)
    }

    /// The share of the signal's power at `frequency` (Goertzel): near 1 for a pure tone.
    static func purity(_ samples: ArraySlice<Int16>, frequency: Double, sampleRate: Int) -> Double {
        let n = Double(samples.count)
        let k = (n * frequency / Double(sampleRate)).rounded()
        let w = 2 * .pi * k / n
        let coefficient = 2 * cos(w)
        var s1 = 0.0, s2 = 0.0
        var total = 0.0
        for sample in samples {
            let x = Double(sample)
            total += x * x
            let s0 = x + coefficient * s1 - s2
            s2 = s1
            s1 = s0
        }
        let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
        return total > 0 ? 2 * power / (n * total) : 0
    }

    /// DTMF digits as audio at 8 kHz (spandsp's generator: 50 ms tone, 55 ms pause by default;
    /// longer here so that every codec carries them comfortably).
    static func dtmf(_ digits: String, sampleRate: Int = 8000) -> [Int16] {
        let tx = dtmf_tx_init(nil)!
        defer { dtmf_tx_free(tx) }
        dtmf_tx_set_timing(tx, 80, 80)
        _ = dtmf_tx_put(tx, digits, -1)
        var out: [Int16] = []
        var chunk = [Int16](repeating: 0, count: 160)
        while true {
            let n = chunk.withUnsafeMutableBufferPointer { Int(dtmf_tx(tx, $0.baseAddress, 160)) }
            if n <= 0 { break }
            out += chunk[..<n]
        }
        out += [Int16](repeating: 0, count: 800)
        return sampleRate == 8000 ? out : upsample(out, factor: sampleRate / 8000)
    }

    /// The digits spandsp's detector hears in 8 kHz audio (16 and 48 kHz are decimated first).
    static func detectDTMF(_ samples: [Int16], sampleRate: Int = 8000) -> String {
        let input = sampleRate == 8000 ? samples : decimate(samples, factor: sampleRate / 8000)
        let rx = dtmf_rx_init(nil, nil, nil)!
        defer { dtmf_rx_free(rx) }
        input.withUnsafeBufferPointer { _ = dtmf_rx(rx, $0.baseAddress, Int32($0.count)) }
        var buffer = [CChar](repeating: 0, count: 128)
        let n = dtmf_rx_get(rx, &buffer, 127)
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Crude but adequate for DTMF (≤ 1.7 kHz): sample-and-hold up, average down.
    static func upsample(_ samples: [Int16], factor: Int) -> [Int16] {
        samples.flatMap { [Int16](repeating: $0, count: factor) }
    }

    static func decimate(_ samples: [Int16], factor: Int) -> [Int16] {
        stride(from: 0, to: samples.count - factor + 1, by: factor).map { start in
            Int16(samples[start..<(start + factor)].reduce(0) { $0 + Int($1) } / factor)
        }
    }
}

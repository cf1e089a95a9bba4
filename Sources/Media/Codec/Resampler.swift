#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Rate conversion by 2 between 8 and 16 kHz, the one the engine needs (G.711 ↔ G.722); Opus runs
/// at whichever rate the other leg has, so it never needs one. A windowed-sinc low-pass FIR
/// (cut-off 3.6 kHz, 48 taps, Blackman window) shared by both directions, run as two polyphase
/// branches when going up and at half rate when going down. History is kept across frames, so
/// frames join without clicks.
public struct HalfBandResampler: Sendable {
    public enum Direction: Sendable { case up, down }

    public let direction: Direction
    private let taps: [Float]
    private var history: [Float]

    public static let tapCount = 48

    public init(_ direction: Direction) {
        self.direction = direction
        let n = Self.tapCount
        let cutoff = 3600.0 / 16000.0  // normalized to the 16 kHz side
        var h = [Float](repeating: 0, count: n)
        let middle = Double(n - 1) / 2
        for i in 0..<n {
            let x = Double(i) - middle
            let sinc = x == 0 ? 2 * cutoff : sin(2 * .pi * cutoff * x) / (.pi * x)
            let window = 0.42 - 0.5 * cos(2 * .pi * Double(i) / Double(n - 1)) + 0.08 * cos(4 * .pi * Double(i) / Double(n - 1))
            h[i] = Float(sinc * window)
        }
        let sum = h.reduce(0, +)
        // Unity gain at DC; going up, each branch carries half the taps, so double them.
        let gain: Float = direction == .up ? 2 : 1
        self.taps = h.map { $0 / sum * gain }
        self.history = [Float](repeating: 0, count: direction == .up ? n / 2 : n)
    }

    /// Output samples for `inputCount` input samples.
    public func outputCount(for inputCount: Int) -> Int { direction == .up ? inputCount * 2 : inputCount / 2 }

    public mutating func process(_ input: UnsafeBufferPointer<Int16>, into output: UnsafeMutableBufferPointer<Int16>) -> Int {
        let count = outputCount(for: input.count)
        guard output.count >= count else { return 0 }
        let n = taps.count
        // Work on history ‖ input so the filter sees across the frame edge.
        var line = history
        line.reserveCapacity(history.count + input.count)
        for sample in input { line.append(Float(sample)) }
        taps.withUnsafeBufferPointer { h in
            line.withUnsafeBufferPointer { x in
                switch direction {
                case .up:
                    // y[2m + p] = Σ_k h[2k + p] · x[m − k], over the input rate.
                    let half = n / 2
                    for m in 0..<input.count {
                        let newest = history.count + m
                        for phase in 0..<2 {
                            var acc: Float = 0
                            for k in 0..<half { acc += h[2 * k + phase] * x[newest - k] }
                            output[2 * m + phase] = Self.clip(acc)
                        }
                    }
                case .down:
                    for m in 0..<count {
                        let newest = history.count + 2 * m + 1
                        var acc: Float = 0
                        for k in 0..<n { acc += h[k] * x[newest - k] }
                        output[m] = Self.clip(acc)
                    }
                }
            }
        }
        history = Array(line.suffix(history.count))
        return count
    }

    @inline(__always)
    private static func clip(_ value: Float) -> Int16 {
        Int16(max(-32768, min(32767, value.rounded())))
    }
}

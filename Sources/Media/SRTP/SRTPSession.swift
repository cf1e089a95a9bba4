import CSRTP

/// One direction of SRTP/SRTCP protection through libsrtp2: a sender protects with its own key,
/// a receiver unprotects with the peer's. libsrtp keeps the rollover counter (RFC 3711 §3.3.1),
/// the replay window (§3.3.2, 128 packets here) and the SRTCP index; this class only owns the
/// session and turns status codes into a verdict. It is not thread-safe, like the libsrtp session
/// under it: a stream owns it on one event loop.
public final class SRTPSession {
    public enum Direction: Sendable { case outbound, inbound }

    public enum Failure: Error, Equatable, Sendable {
        /// The packet's authentication tag did not verify: tampered with, or another key.
        case authentication
        /// A packet index seen before, or too old for the replay window.
        case replay
        /// Too short, or otherwise not a packet libsrtp could work on.
        case malformed
        case other(Int32)
    }

    private var session: srtp_t?
    public let suite: SRTPCryptoSuite
    public let direction: Direction

    /// Bytes a protected packet can grow by; callers leave this much room after the packet.
    public static let maxTrailer = Int(SRTP_MAX_TRAILER_LEN)

    public enum SetupError: Error, Equatable, Sendable {
        case libraryInit(Int32)
        case create(Int32)
    }

    private static let initialized: UInt32 = srtp_init().rawValue

    public init(key: SRTPKeyMaterial, direction: Direction, replayWindow: UInt = 128) throws(SetupError) {
        let initStatus = Int32(Self.initialized)
        guard initStatus == srtp_err_status_ok.rawValue else { throw .libraryInit(initStatus) }
        self.suite = key.suite
        self.direction = direction
        var policy = srtp_policy_t()
        switch key.suite {
        case .aesCM128HMACSHA1_80:
            // libsrtp's ..._aes_cm_128_hmac_sha1_80 is a macro for the default policy.
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        case .aesCM128HMACSHA1_32:
            // RFC 4568 §6.2.1: the _32 suite still protects SRTCP with an 80-bit tag.
            srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        case .aeadAES128GCM:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        }
        policy.ssrc.type = direction == .outbound ? ssrc_any_outbound : ssrc_any_inbound
        policy.window_size = replayWindow
        policy.allow_repeat_tx = 0
        var created: srtp_t?
        let status = key.bytes.withUnsafeBufferPointer { keyBytes -> srtp_err_status_t in
            policy.key = UnsafeMutablePointer(mutating: keyBytes.baseAddress)
            return srtp_create(&created, &policy)
        }
        guard status == srtp_err_status_ok, let created else { throw .create(Int32(status.rawValue)) }
        self.session = created
    }

    deinit {
        if let session { srtp_dealloc(session) }
    }

    /// Protects the RTP packet of `length` bytes at the start of `buffer` in place; returns the new
    /// length. `buffer` must have `maxTrailer` bytes of room after the packet.
    public func protect(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(Failure) -> Int {
        guard length >= 0, buffer.count >= length + Self.maxTrailer else { throw .malformed }
        return try transform(buffer, length: length, with: srtp_protect)
    }

    /// Verifies and decrypts the SRTP packet in place; returns the plain RTP length.
    public func unprotect(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(Failure) -> Int {
        try transform(buffer, length: length, with: srtp_unprotect)
    }

    /// The same for RTCP; SRTCP adds the 4-byte index and the tag.
    public func protectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(Failure) -> Int {
        guard length >= 0, buffer.count >= length + Self.maxTrailer + 4 else { throw .malformed }
        return try transform(buffer, length: length, with: srtp_protect_rtcp)
    }

    public func unprotectRTCP(_ buffer: UnsafeMutableRawBufferPointer, length: Int) throws(Failure) -> Int {
        try transform(buffer, length: length, with: srtp_unprotect_rtcp)
    }

    /// One libsrtp call on the packet in place: the new length, or the failure.
    private func transform(
        _ buffer: UnsafeMutableRawBufferPointer, length: Int,
        with function: (srtp_t?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int32>?) -> srtp_err_status_t
    ) throws(Failure) -> Int {
        guard length >= 0, length <= buffer.count, let base = buffer.baseAddress else { throw .malformed }
        var len = Int32(clamping: length)
        try Self.check(function(session, base, &len))
        return Int(len)
    }

    private static func check(_ status: srtp_err_status_t) throws(Failure) {
        switch status {
        case srtp_err_status_ok: return
        case srtp_err_status_auth_fail: throw .authentication
        case srtp_err_status_replay_fail, srtp_err_status_replay_old: throw .replay
        case srtp_err_status_bad_param, srtp_err_status_parse_err: throw .malformed
        default: throw .other(Int32(status.rawValue))
        }
    }
}

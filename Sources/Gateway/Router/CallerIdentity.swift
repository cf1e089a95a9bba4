public import SIP
public import SIPUserAgent

/// Who calls, as each side of the bridge shows it (issue 15). The concierge must see which door
/// calls, the station who answers; every name comes from outside and is made safe for a header
/// (`SIPNameAddress.safeDisplayName`).
public enum CallerIdentity {
    /// The From display name of a station's call toward the cloud: the channel's `display_name`
    /// (else the station's own display name), then the station's number in parentheses —
    /// "Lobby door (801)". The From URI stays the channel's AOR: the core asserts it.
    public static func towardCloud(channel: BridgeConfiguration.Channel, station from: SIPNameAddress?) -> String? {
        let name = SIPNameAddress.safeDisplayName(channel.displayName) ?? SIPNameAddress.safeDisplayName(from?.displayText)
        let number = from?.sipURI?.user.flatMap(Self.stationNumber)
        switch (name, number) {
        case (let name?, let number?): return "\(name) (\(number))"
        case (let name?, nil): return name
        case (nil, let number?): return number
        case (nil, nil): return nil
        }
    }

    /// The display name toward the stations when the cloud (or a mesh peer) calls: the identity
    /// the core asserted (P-Asserted-Identity, RFC 3325: the directory's name for the user) when
    /// the call came from the core, else the caller's From display name, else its user name.
    public static func towardStations(_ call: SIPIncomingCall, trusted: Bool) -> String? {
        if trusted, let name = SIPNameAddress.safeDisplayName(call.assertedIdentity?.displayText) { return name }
        return SIPNameAddress.safeDisplayName(call.from?.displayText) ?? SIPNameAddress.safeDisplayName(call.from?.sipURI?.user.map(SIPURI.unescaped))
    }

    /// A station's user part when it is a number or a plain name (at most 32 characters).
    static func stationNumber(_ user: String) -> String? {
        let text = SIPURI.unescaped(user)
        guard (1...32).contains(text.count),
            text.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0) || "*#+-_.".unicodeScalars.contains($0) })
        else { return nil }
        return text
    }
}

public import SIP

/// A hold from the cloud or mesh leg relayed to the station (RFC 3264 §8.4; issue 15): what the
/// far party does to us, the gateway does to the station — its `sendonly` (music on hold, or
/// nothing) becomes our `sendonly` toward the station, `inactive` becomes `inactive`, the resume
/// `sendrecv` — so that a station that shows holds shows this one, and stops sending into a
/// stream nobody plays. Only for a station that lists INVITE in its Allow (and `[legacy] hold =
/// "relay"`); a station that refuses one relayed hold keeps the rest absorbed at the bridge
/// (silence toward it), as every hold is for a station without re-INVITE.
///
/// One re-INVITE to the station at a time (RFC 3261 §14.1): a change while one is out waits for
/// its answer, then the newest wish goes; a re-INVITE that cannot go yet (the station's own
/// exchange is under way) is tried again every `retryInterval`, at most `maximumAttempts` times.
public struct StationHold: Sendable, Equatable {
    /// Holds are relayed on this call (the setting, and INVITE in the station's Allow).
    public internal(set) var enabled = false
    /// What our description toward the station says, as the station accepted it.
    public internal(set) var agreed = SDPDirection.sendrecv
    /// What the far party's last change asks for.
    public internal(set) var wanted = SDPDirection.sendrecv
    /// Our re-INVITE to the station that is out, and what it offers.
    public internal(set) var inFlight: SDPDirection?
    /// The station refused a relayed hold with this status (or gave up on us): holds are absorbed from now on.
    public internal(set) var refusedWith: Int?
    var attempts = 0

    public static let retryInterval = 0.25
    public static let maximumAttempts = 40
}

extension BridgedCall {
    /// Whether holds go on to the station on this call; known at the answer (the station's
    /// Allow is in its INVITE or in its 2xx).
    public mutating func relayHolds(toStation: Bool) {
        stationHold.enabled = toStation
    }

    /// The far leg's party changed what it sends and receives (its offer, or its answer to the
    /// offer it asked us for), at `now`. We do the same toward the station: we send to it what
    /// the party sends, and take from it what the party will receive.
    public mutating func farLegChanged(sends: Bool, receives: Bool, at now: Double) -> [Action] {
        guard phase == .connected, stationHold.enabled, stationHold.refusedWith == nil else { return [] }
        stationHold.wanted = SDPDirection(sends: sends, receives: receives)
        stationHold.attempts = 0
        return nextStationOffer()
    }

    /// The re-INVITE of `.offerToStation` went (`sent`), or could not go now and is tried again.
    public mutating func stationOffer(_ direction: SDPDirection, sent: Bool, at now: Double) -> [Action] {
        if sent {
            stationHold.inFlight = direction
            timers.stop(.stationOffer)
            return []
        }
        stationHold.attempts += 1
        guard stationHold.attempts < StationHold.maximumAttempts else {
            return stationRefused(status: 491)
        }
        timers.start(.stationOffer, after: StationHold.retryInterval, now: now)
        return []
    }

    /// The station answered our re-INVITE: what it offered holds now; a newer wish goes next.
    public mutating func stationAnswered() -> [Action] {
        guard let sent = stationHold.inFlight else { return [] }
        stationHold.agreed = sent
        stationHold.inFlight = nil
        return nextStationOffer()
    }

    /// The station refused our re-INVITE (or answered it without SDP): the call goes on as it
    /// was (RFC 3261 §14.1), and the bridge absorbs holds from now on. A station that took the
    /// hold but refuses the resume stays as the hold left it until it offers itself.
    public mutating func stationRefused(status: Int) -> [Action] {
        guard stationHold.refusedWith == nil else { return [] }
        stationHold.inFlight = nil
        stationHold.refusedWith = status
        timers.stop(.stationOffer)
        return []
    }

    /// The `.stationOffer` timer: the re-INVITE that could not go is tried again.
    mutating func retryStationOffer() -> [Action] {
        guard phase == .connected, stationHold.refusedWith == nil else { return [] }
        return nextStationOffer()
    }

    private func nextStationOffer() -> [Action] {
        guard stationHold.inFlight == nil, stationHold.wanted != stationHold.agreed else { return [] }
        return [.offerToStation(stationHold.wanted)]
    }
}

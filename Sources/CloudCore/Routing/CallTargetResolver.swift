import Foundation

/// The location stage: what a call to a Request-URI user part rings. A user's forwarding rules
/// (first match, evaluated in each rule's zone) apply first, then the user's contacts; a ring
/// group rings its members' contacts in parallel (the proxy caps the branches); a channel
/// rings the gateway's registration for it. The call policy (`Directory.permission`) decides
/// first whether the caller may reach the name at all; a ring group rings only the channels it
/// may reach itself.
struct CallTargetResolver {
    let directory: Directory
    let userRingSeconds: Int

    enum Plan: Equatable {
        /// Ring these AORs' contacts (channel AORs may fall back to their device's).
        case ring(aors: [String], ringSeconds: Int, target: String)
        /// Relay to a URI outside the directory (a forwarding rule's `uri` target).
        case external(uri: String, target: String)
        case reject(status: Int, reason: String, target: String)
        /// The call policy refuses: answered as an unknown name is (404), `reason` for the log.
        case refuse(reason: String, target: String)
    }

    func plan(for name: String, caller: Directory.Party, at now: Date) throws -> Plan {
        let callable = try directory.callable(named: name)
        if let callable, case .refused(let reason) = directory.permission(for: caller, toCall: callable) {
            return .refuse(reason: reason, target: name)
        }
        switch callable {
        case nil:
            return .reject(status: 404, reason: "Not Found", target: name)
        case .channel(let device, let number)?:
            return .ring(aors: [Directory.channelName(device: device, number: number)], ringSeconds: userRingSeconds, target: "channel:\(name)")
        case .ringGroup(let group, let members, let seconds)?:
            return .ring(aors: try reachable(members, from: group, caller: caller), ringSeconds: seconds, target: "ring-group:\(group)")
        case .user(let user)?:
            // Forwarding applies once: the user a rule sends the call to rings directly, so that
            // two users forwarding to each other cannot loop.
            guard let rule = ForwardingRule.firstMatch(try directory.forwardingRules(user: user), at: now) else {
                return .ring(aors: [user], ringSeconds: userRingSeconds, target: "user:\(user)")
            }
            // The rule's target is checked again now, for the forwarding user: a name deleted and
            // made again in another company is no way out of the company.
            func allowed(_ target: String) throws -> Bool {
                guard let callable = try directory.callable(named: target) else { return false }
                return directory.permission(for: .user(user), toCall: callable) == .allowed
            }
            switch rule.target {
            case .user(let other):
                guard try allowed(other) else {
                    return .reject(status: 480, reason: "Temporarily Unavailable", target: "user:\(user)→user:\(other) (not reachable)")
                }
                return .ring(aors: [other], ringSeconds: userRingSeconds, target: "user:\(user)→user:\(other)")
            case .ringGroup(let group):
                guard case .ringGroup(_, let members, let seconds)? = try directory.callable(named: group), try allowed(group) else {
                    return .reject(status: 480, reason: "Temporarily Unavailable", target: "user:\(user)→ring-group:\(group)")
                }
                return .ring(aors: try reachable(members, from: group, caller: caller), ringSeconds: seconds, target: "user:\(user)→ring-group:\(group)")
            case .uri(let uri):
                return .external(uri: uri, target: "user:\(user)→\(uri)")
            case .reject(let status):
                return .reject(status: status, reason: status == 486 ? "Busy Here" : "Do Not Disturb", target: "user:\(user)→reject")
            }
        }
    }

    /// The members a ring group may ring: a member of another company, or a channel of a site
    /// that grants the group nothing, is left out; a channel of a site whose policy is `site`
    /// rings only when the caller too is of that site (a ring group is no way around it).
    private func reachable(_ members: [String], from group: String, caller: Directory.Party) throws -> [String] {
        try members.filter { member in
            guard let callable = try directory.callable(named: member) else { return true }  // rings nobody anyway
            guard directory.permission(for: .ringGroup(group), toCall: callable) == .allowed else { return false }
            if case .channel(let device, _) = callable, try directory.channelPolicy(ofDevice: device) == .site {
                return directory.permission(for: caller, toCall: callable) == .allowed
            }
            return true
        }
    }
}

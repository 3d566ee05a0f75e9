#if canImport(Glibc)
import Glibc
#endif

/// The tc pieces Kata's "tcfilter" model needs: an ingress qdisc on an interface, and a
/// u32 filter matching every frame whose action (mirred) redirects it out of another
/// interface. Two of them join a pod's veth and its VM's TAP both ways. (cls_matchall
/// would be shorter, but not every host kernel has it; u32 and mirred are everywhere.)
public struct TrafficControl: Sendable {
    public let socket: NetlinkSocket

    public init(socket: NetlinkSocket) { self.socket = socket }

    /// TC_H_INGRESS as the parent, handle ffff:0.
    static let ingressParent: UInt32 = 0xFFFF_FFF1
    static let ingressHandle: UInt32 = 0xFFFF_0000
    static let kind: UInt16 = 1, options: UInt16 = 2
    static let u32Selector: UInt16 = 5, u32Actions: UInt16 = 7
    static let actionKind: UInt16 = 1, actionOptions: UInt16 = 2, mirredParameters: UInt16 = 2
    /// TC_ACT_STOLEN: the frame leaves through the mirror and goes no further here.
    static let actionStolen: Int32 = 4
    /// TCA_EGRESS_REDIR.
    static let egressRedirect: Int32 = 1
    /// ETH_P_ALL, network order, in the filter's protocol half of tcm_info.
    static let allProtocols: UInt16 = 0x0003

    /// tcmsg: family, pads, ifindex, handle, parent, info.
    static func header(index: Int32, handle: UInt32, parent: UInt32, info: UInt32 = 0) -> [UInt8] {
        var header: [UInt8] = [UInt8(AF_UNSPEC), 0, 0, 0]
        header.appendLittleEndian(UInt32(bitPattern: index))
        header.appendLittleEndian(handle)
        header.appendLittleEndian(parent)
        header.appendLittleEndian(info)
        return header
    }

    /// The ingress qdisc every redirecting filter hangs from.
    static func ingressQdiscMessage(index: Int32, create: Bool) -> NetlinkMessage {
        let payload = header(index: index, handle: ingressHandle, parent: ingressParent)
            + NetlinkAttribute.encode([NetlinkAttribute(kind, string: "ingress")])
        return NetlinkMessage(type: create ? Netlink.newQdisc : Netlink.deleteQdisc,
                              flags: create ? Netlink.flagCreate | Netlink.flagExclusive : 0, payload: payload)
    }

    /// `tc filter add dev FROM parent ffff: protocol all prio 1 u32 match u32 0 0 action
    /// mirred egress redirect dev TO`, as one message.
    static func redirectMessage(from: Int32, to: Int32) -> NetlinkMessage {
        // tc_u32_sel: flags (TC_U32_TERMINAL), offshift, nkeys, pad, offmask, off, offoff,
        // hoff, hmask; then one tc_u32_key {mask, val, off, offmask}, all zero: matches all.
        var selector: [UInt8] = [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        selector += [UInt8](repeating: 0, count: 16)
        // tc_mirred: tc_gen {index, capab, action, refcnt, bindcnt}, eaction, ifindex.
        var mirred: [UInt8] = []
        mirred.appendLittleEndian(UInt32(0))
        mirred.appendLittleEndian(UInt32(0))
        mirred.appendLittleEndian(actionStolen)
        mirred.appendLittleEndian(Int32(0))
        mirred.appendLittleEndian(Int32(0))
        mirred.appendLittleEndian(egressRedirect)
        mirred.appendLittleEndian(UInt32(bitPattern: to))
        let action = NetlinkAttribute(1, nested: [NetlinkAttribute(actionKind, string: "mirred"),
                                                  NetlinkAttribute(actionOptions, nested: [NetlinkAttribute(mirredParameters, mirred)])])
        let options = NetlinkAttribute(options, nested: [NetlinkAttribute(u32Selector, selector),
                                                         NetlinkAttribute(u32Actions, nested: [action])])
        let info = (UInt32(1) << 16) | UInt32(allProtocols.bigEndian)
        let payload = header(index: from, handle: 0, parent: ingressHandle, info: info)
            + NetlinkAttribute.encode([NetlinkAttribute(kind, string: "u32"), options])
        return NetlinkMessage(type: Netlink.newFilter, flags: Netlink.flagCreate | Netlink.flagExclusive, payload: payload)
    }

    /// Everything arriving on `from` leaves through `to` (an ingress qdisc is added on
    /// `from` if it has none).
    public func redirectAll(from: Int32, to: Int32) throws(NetlinkError) {
        do {
            try socket.request(TrafficControl.ingressQdiscMessage(index: from, create: true), "add an ingress qdisc to link \(from)")
        } catch .kernel(_, EEXIST) {
            // Already there (the other direction's set-up, or a retry): the filter still goes on.
        }
        try socket.request(TrafficControl.redirectMessage(from: from, to: to), "redirect link \(from) to link \(to)")
    }

    /// Removes the ingress qdisc of `index` and every filter on it; nothing to remove is fine.
    public func removeIngress(_ index: Int32) throws(NetlinkError) {
        do {
            try socket.request(TrafficControl.ingressQdiscMessage(index: index, create: false), "remove the ingress qdisc of link \(index)")
        } catch .kernel(_, let code) where code == EINVAL || code == ENOENT || code == ENODEV {
            // No ingress qdisc (or no such link any more).
        }
    }
}

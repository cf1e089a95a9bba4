#!/usr/bin/env python3
"""Writes the seed inputs of the structured fuzz targets (Fuzz/<Target>/seeds).

The structured targets read their input through FuzzInput (Fuzz/FuzzDriver): bytes, big-endian
u16/u32, numbers in a range (a byte below 256 choices, a u16 below 65,536), picks from tables,
length-prefixed data. This writes inputs in that format that steer each target to the extremes
the issue names — 1,500-byte payloads, port 65535, ptime 0 and 2^63, empty and maximal TXT
strings — and to ordinary calls that the fuzzer then mutates. Run: python3 make-seeds.py (from
anywhere); it rewrites the generated seeds and leaves the regression seeds alone.
"""
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def u16(v):
    return struct.pack(">H", v)


def text(s, span_max):
    """FuzzInput.text(max:): a count read as a byte (max < 256) or a u16, then the bytes."""
    b = s.encode()
    count = bytes([len(b)]) if span_max < 256 else u16(len(b))
    return count + b


def write(target, name, data):
    folder = os.path.join(ROOT, target, "seeds")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def sdp(lines):
    return "\r\n".join(lines) + "\r\n"


LEGACY_OK = ["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0",
             "m=audio 40000 RTP/AVP 9 8 0 100", "a=rtpmap:9 G722/8000", "a=rtpmap:100 telephone-event/8000", "a=ptime:20", "a=sendrecv"]
CLOUD_ANSWER = ["v=0", "o=- 2 1 IN IP4 198.51.100.20", "s=-", "c=IN IP4 198.51.100.20", "t=0 0",
                "m=audio 50000 RTP/SAVP 111 101", "a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/48000",
                "a=ptime:20", "a=rtcp-mux", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB", "a=sendrecv"]


def call_path(offer_lines, answer_lines=None, packets=b"", flags=0, policy=0):
    """CallPathFuzzer: flags, policy, raw offer, INVITE fields, branches, raw answer, packets."""
    data = bytes([flags, policy]) + b"\x00" + text(sdp(offer_lines), 1500) + u16(1) + b"\x00"
    if answer_lines is None:
        return data
    return data + b"\x00" + b"\x00" + text(sdp(answer_lines), 1500) + packets


def rtp(side, size_index, seed=0x11):
    """One RTP op: next packet of the stream, payload size from the table (index), from the
    peer's address (an SRTP leg protects it: one more byte)."""
    op = 0x80 if side == "b" else 0x00
    return bytes([op, 0x24, size_index, seed]) + (b"\x01" if side == "b" else b"") + b"\x02"


def tick(ms):
    return bytes([0x06, ms])


# CallPathFuzzer: the crash sites of the issue as offers (each now a 488), and calls that carry
# packets at the size extremes both ways.
for name, extra, port in [
    ("regression-rtcp-port-65536", [], 65535),
    ("regression-a-rtcp-70000", ["a=rtcp:70000"], 40000),
    ("extreme-ptime-0", ["a=ptime:0"], 40000),
    ("extreme-ptime-2e63", ["a=ptime:9223372036854775808"], 40000),
    ("regression-ptime-huge", ["a=ptime:999999999999999"], 40000),
]:
    lines = [l.replace("40000", str(port)) for l in LEGACY_OK] + extra
    write("CallPathFuzzer", name, call_path(lines, CLOUD_ANSWER, rtp("a", 0) + tick(20)))
write("CallPathFuzzer", "call-g722-to-opus-1500-byte-payloads",
      call_path(LEGACY_OK, CLOUD_ANSWER, rtp("a", 5) + rtp("a", 11) + rtp("a", 10) + rtp("a", 12) + tick(20) + rtp("b", 2) + rtp("b", 11) + tick(60)))
write("CallPathFuzzer", "call-pcmu-1400-byte-payload",
      call_path([l.replace("RTP/AVP 9 8 0 100", "RTP/AVP 0 100") for l in LEGACY_OK], CLOUD_ANSWER, rtp("a", 4) + rtp("a", 11) + rtp("a", 13) + tick(40)))
write("CallPathFuzzer", "zeros", bytes(64))
write("CallPathFuzzer", "ones", bytes([0xFF]) * 64)

# AnswerFuzzer: our side (0 cloud, 1 legacy, 2 mesh), the answer, NUL, re-INVITE offers.
def answer_seed(side, answer, *reoffers):
    return bytes([side]) + b"\x00".join(sdp(d).encode() for d in (answer, *reoffers))

CLOUD_REOFFER_HOLD = [l.replace("a=sendrecv", "a=sendonly") for l in CLOUD_ANSWER]
write("AnswerFuzzer", "cloud-answer-then-hold", answer_seed(0, CLOUD_ANSWER, CLOUD_REOFFER_HOLD))
write("AnswerFuzzer", "extreme-port-65535-no-mux", answer_seed(0, [l.replace("50000", "65535") for l in CLOUD_ANSWER if l != "a=rtcp-mux"]))
write("AnswerFuzzer", "extreme-ptime-0-and-2e63", answer_seed(0, [l.replace("a=ptime:20", "a=ptime:0") for l in CLOUD_ANSWER],
                                                              [l.replace("a=ptime:20", "a=ptime:9223372036854775808") for l in CLOUD_ANSWER]))
LEGACY_ANSWER = [l.replace("RTP/AVP 9 8 0 100", "RTP/AVP 9 100") for l in LEGACY_OK]
write("AnswerFuzzer", "legacy-answer-rtcp-70000", answer_seed(1, LEGACY_ANSWER + ["a=rtcp:70000"], LEGACY_ANSWER))
write("AnswerFuzzer", "legacy-answer-event-clock-huge", answer_seed(1, [l.replace("telephone-event/8000", "telephone-event/9000000000000000000") for l in LEGACY_ANSWER]))

# StreamFramingFuzzer: cut count, cuts (u16 each), then the stream.
OPTIONS = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello"
write("StreamFramingFuzzer", "two-messages-cut", bytes([3]) + u16(5) + u16(40) + u16(70) + OPTIONS + b"\r\n\r\n" + OPTIONS)
write("StreamFramingFuzzer", "regression-stray-line-feeds", bytes([1]) + u16(1000) + b"\n" * 3000 + OPTIONS)
write("StreamFramingFuzzer", "crlf-cr-then-other", bytes([2]) + u16(3) + u16(4) + b"\r\n\rX" + OPTIONS)
write("StreamFramingFuzzer", "content-length-huge", bytes([0]) + b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999999\r\n\r\n")
write("StreamFramingFuzzer", "head-never-ends", bytes([0]) + b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 5000)

# MDNSFuzzer: steps; a structured response is op 1: device from the table, TTL, records.
def mdns_response(device_index, ttl_index, txt_choices):
    """A response step: source bool, op 1, device from table, ttl from table, one TXT record."""
    step = b"\x01" + b"\x01"            # source fe80::2, op: structured response
    step += b"\x01" + bytes([device_index])  # device from the table
    step += b"\x01" + bytes([ttl_index])     # ttl from the table
    step += bytes([1])                       # one record (int(in: 1...6) → byte 0 → 1)
    step += b"\x01"                          # the record's ttl is the response's
    step += bytes([2])                       # record kind: TXT
    step += b"\x01"                          # named after the instance
    step += bytes([len(txt_choices)])        # strings
    for choice in txt_choices:
        step += bytes([3, choice])           # an extreme from the table
    step += u16(0) + b"\x01" + b"\x00"       # split, id, response flags
    return step + b"\x80"                    # jitter

def mdns_announcement(ttl_index, extremes, device_index=0):
    """gw2's whole announcement (PTR, SRV, TXT with device, site, numbers and extreme strings,
    AAAA fe80::2) as one structured response step, from fe80::2."""
    step = b"\x01\x01"                            # source fe80::2; op: structured response
    step += b"\x01" + bytes([device_index])        # device from the table ("gw2")
    step += b"\x01" + bytes([ttl_index])           # TTL from the table
    step += bytes([3])                             # 1 + 3 = four records
    step += b"\x01\x00" + b"\x01"                  # PTR: response TTL; kind 0; the instance
    step += b"\x01\x01" + b"\x01" + u16(0) + u16(0) + u16(0) + bytes([2]) + bytes([2]) + b"\x01"
    #        SRV: TTL; kind 1; instance; priority, weight; u16 for the table; port 5061; target symphony-gw2.local; cache-flush
    strings = bytes([0]) + bytes([1, 0]) + bytes([2, 1]) + u16(201)   # device=gw2, site=lobby, numbers=201
    strings += b"".join(bytes([3, e]) for e in extremes)
    step += b"\x01\x02" + b"\x01" + bytes([3 + len(extremes)]) + strings
    step += b"\x01\x03" + b"\x01\x02" + bytes([2])  # AAAA: TTL; kind 3; fe80::2; named symphony-gw2.local
    step += bytes([4]) + u16(0) + b"\x01"             # all answers; id; response flags
    return step + b"\x80"                             # jitter

write("MDNSFuzzer", "regression-txt-equals", mdns_announcement(3, [0]))
write("MDNSFuzzer", "extreme-txt-empty-and-maximal", mdns_announcement(3, [2, 6, 7]))
write("MDNSFuzzer", "extreme-ttl-max", mdns_announcement(7, [1]) + bytes([1, 4]) + u16(0) + u16(0) + u16(0) + u16(0))
write("MDNSFuzzer", "zeros", bytes(96))

# ClaimingFuzzer: request (odd first byte) or answer (even).
write("ClaimingFuzzer", "request-valid-code", b"\x01\x01\x00\x01\x01\x01\x00\x00\x00\x00")
write("ClaimingFuzzer", "request-raw", b"\x01\x00" + b"POST /v1/claim HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n{")
# An answer: branch byte (even), not raw, each of the five fields its good value, the status
# table's u16 then 200, the right Content-Length, nothing after.
write("ClaimingFuzzer", "answer-ok", b"\x00\x01" + b"\x01\x00" * 5 + u16(0) + b"\x00\x01\x00")
write("ClaimingFuzzer", "answer-raw", b"\x00\x00" + b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{\"device\": \"" + b"a." * 200 + b"\"}")

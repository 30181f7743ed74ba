"""LDAP: an anonymous search of the root DSE (base '', scope base, filter (objectClass=*)),
which LDAPv3 servers answer without a bind. The SearchResultEntry lists what the server is
(naming contexts, supported versions, vendorName/vendorVersion where given, Active Directory's
functionality levels, OpenLDAP's OpenLDAProotDSE class); a SearchResultDone alone (e.g. 'bind
required') still identifies LDAP.
"""

from __future__ import annotations

import secrets

from ..base import (NoMatch, Probe, ProbeContext, Send, Step, Verdict, Wait, escape_evidence,
                    register)
from . import _ber as ber
from ._wire import Bad, Reader, Short, text

SEARCH_REQUEST, SEARCH_ENTRY, SEARCH_DONE, SEARCH_REFERENCE = 0x63, 0x64, 0x65, 0x73
EXTENDED_RESPONSE = 0x78
FILTER_PRESENT = 0x87
ATTRIBUTES = ("objectClass", "namingContexts", "supportedLDAPVersion", "vendorName",
              "vendorVersion", "supportedSASLMechanisms", "defaultNamingContext",
              "domainControllerFunctionality", "forestFunctionality", "dnsHostName",
              "serverName", "supportedExtension")
RESULT_CODES = {0: "success", 1: "operationsError", 2: "protocolError", 8: "strongerAuthRequired",
                13: "confidentialityRequired", 32: "noSuchObject",
                48: "inappropriateAuthentication",
                49: "invalidCredentials", 50: "insufficientAccessRights", 52: "unavailable",
                53: "unwillingToPerform"}
STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
MAX_MESSAGE = 64 * 1024
MAX_VALUES = 32


def build_rootdse_search(message_id: int) -> bytes:
    request = ber.sequence(
        ber.octets(b""), ber.integer(0, ber.ENUMERATED), ber.integer(0, ber.ENUMERATED),
        ber.integer(0), ber.integer(10), ber.boolean(False),
        ber.octets(b"objectClass", FILTER_PRESENT),
        ber.sequence(*(ber.octets(name) for name in ATTRIBUTES)),
        tag=SEARCH_REQUEST)
    return ber.sequence(ber.integer(message_id), request)


def read_message(reader: Reader) -> tuple[int, int, Reader]:
    """One LDAPMessage: (message id, protocol op tag, op content). Short when incomplete."""
    tag, message = ber.read_tlv(reader, max_size=MAX_MESSAGE)
    if tag != ber.SEQUENCE:
        raise Bad("LDAPMessage is not a SEQUENCE")
    try:
        message_id = ber.read_integer(message)
        op_tag, op = ber.read_tlv(message)
    except Short as exc:
        raise Bad(f"message content overruns: {exc}") from None
    return message_id, op_tag, op


def parse_entry(op: Reader) -> dict[str, list[str]]:
    ber.read_octets(op)  # objectName (empty for the root DSE)
    attributes = ber.expect(op, ber.SEQUENCE)
    out: dict[str, list[str]] = {}
    for _ in range(64):
        if not attributes.left:
            break
        attribute = ber.expect(attributes, ber.SEQUENCE)
        name = text(ber.read_octets(attribute), 64)
        values = ber.expect(attribute, ber.SET)
        collected = []
        while values.left and len(collected) < MAX_VALUES:
            collected.append(text(ber.read_octets(values), 256))
        out[name.lower()] = collected
    return out


def parse_result(op: Reader) -> dict:
    code = ber.read_integer(op, ber.ENUMERATED)
    ber.read_octets(op)  # matchedDN
    message = text(ber.read_octets(op), 200)
    result = {"result": RESULT_CODES.get(code, str(code))}
    if message:
        result["diagnostic"] = message
    return result


def product_from_root_dse(entry: dict[str, list[str]]) -> tuple[str | None, str | None]:
    classes = {value.lower() for value in entry.get("objectclass", [])}
    vendor = (entry.get("vendorname") or [""])[0]
    vendor_version = (entry.get("vendorversion") or [""])[0]
    if "openldaprootdse" in classes:
        return "OpenLDAP", None
    if "domaincontrollerfunctionality" in entry or "forestfunctionality" in entry:
        return "Microsoft Active Directory", None
    if vendor_version.startswith("389-Directory/"):
        return "389 Directory Server", vendor_version.split("/", 1)[1].split()[0]
    if vendor_version.lower().startswith("opendj"):
        parts = vendor_version.split()
        return "OpenDJ", parts[1] if len(parts) > 1 else None
    if vendor:
        return vendor, vendor_version or None
    return None, None


@register
class LdapProbe(Probe):
    name = "ldap"
    transport = "tcp"
    ports = frozenset({389, 636, 3268, 3269, 10389})
    services = frozenset({"ldap", "ldaps", "msft-gc", "msft-gc-ssl"})
    rarity = 40
    read_budget = MAX_MESSAGE

    def __init__(self, ctx: ProbeContext) -> None:
        super().__init__(ctx)
        self.message_id = 1 + secrets.randbelow(0x7FFF)

    def start(self) -> Step:
        return Send(build_rootdse_search(self.message_id))

    def feed(self, data: bytes) -> Step:
        return self._parse(data, final=False)

    def finish(self, data: bytes) -> Step:
        return self._parse(data, final=True) if data else NoMatch("no answer")

    def _parse(self, data: bytes, final: bool) -> Step:
        if data[:1] != b"\x30":
            return NoMatch("not a BER SEQUENCE")
        reader = Reader(data)
        entry: dict[str, list[str]] | None = None
        for _ in range(8):
            if not reader.left:
                break
            try:
                message_id, op_tag, op = read_message(reader)
            except Short:
                break
            except Bad as exc:
                return NoMatch(str(exc)) if entry is None else self._verdict(entry, None, data)
            try:
                if message_id == 0 and op_tag == EXTENDED_RESPONSE:
                    # notice of disconnection: the server refuses us, but it speaks LDAP
                    return self._verdict(entry, parse_result(op), data)
                if message_id != self.message_id:
                    return NoMatch("reply to another message id")
                if op_tag == SEARCH_ENTRY:
                    entry = parse_entry(op)
                elif op_tag == SEARCH_DONE:
                    return self._verdict(entry, parse_result(op), data)
                elif op_tag != SEARCH_REFERENCE:
                    return NoMatch(f"unexpected LDAP operation 0x{op_tag:02x}")
            except (Short, Bad) as exc:
                return NoMatch(f"malformed LDAP operation: {exc}")
        if entry is not None and final:
            return self._verdict(entry, None, data)
        return NoMatch("reply cut short") if final else Wait()

    def _verdict(self, entry: dict[str, list[str]] | None, result: dict | None,
                 data: bytes) -> Verdict:
        extra: dict = dict(result or {})
        product = version = None
        if entry is not None:
            product, version = product_from_root_dse(entry)
            for key, label in (("namingcontexts", "naming_contexts"),
                               ("supportedldapversion", "ldap_versions"),
                               ("supportedsaslmechanisms", "sasl_mechanisms"),
                               ("vendorname", "vendor_name"), ("vendorversion", "vendor_version"),
                               ("dnshostname", "dns_host_name")):
                if entry.get(key):
                    extra[label] = entry[key] if len(entry[key]) > 1 or key in (
                        "namingcontexts", "supportedldapversion", "supportedsaslmechanisms") \
                        else entry[key][0]
            if STARTTLS_OID in entry.get("supportedextension", []):
                extra["starttls"] = True
        return Verdict("ldap", product, version, extra, 1.0 if entry or result else 0.8,
                       escape_evidence(data, 160))

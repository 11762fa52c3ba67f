// The SSRF guard for pictures fetched by URL: a URL from an API caller must not make vistyle reach
// its own host, the operator's private network or a cloud metadata endpoint. Addresses are checked
// after DNS resolution, inside the socket's own lookup, so the address checked is the address
// connected to (a name that resolves to a private address, or re-resolves to one later, is refused
// the same way as a literal one).
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

const blocked = new BlockList();
const v4: Array<[string, number, string]> = [
  ['0.0.0.0', 8, 'this network'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'shared (carrier-grade NAT)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, '6to4 relay'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];
const v6: Array<[string, number, string]> = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['100::', 64, 'discard'],
  ['2001:db8::', 32, 'documentation'],
  ['fc00::', 7, 'unique local (private)'],
  ['fe80::', 10, 'link-local'],
  ['fec0::', 10, 'site-local'],
  ['ff00::', 8, 'multicast'],
];
const reasons: Array<{ list: BlockList; reason: string }> = [];
for (const [network, prefix, reason] of v4) {
  const list = new BlockList();
  list.addSubnet(network, prefix, 'ipv4');
  blocked.addSubnet(network, prefix, 'ipv4');
  reasons.push({ list, reason });
}
for (const [network, prefix, reason] of v6) {
  const list = new BlockList();
  list.addSubnet(network, prefix, 'ipv6');
  blocked.addSubnet(network, prefix, 'ipv6');
  reasons.push({ list, reason });
}

/** The IPv4 address inside a NAT64 (64:ff9b::/96) address, else undefined. */
function nat64Embedded(address: string): string | undefined {
  const match = /^64:ff9b::(?:([0-9a-f]{1,4}):([0-9a-f]{1,4})|(\d+\.\d+\.\d+\.\d+))$/i.exec(address);
  if (!match) return undefined;
  if (match[3]) return match[3];
  const high = parseInt(match[1]!, 16);
  const low = parseInt(match[2]!, 16);
  return [high >> 8, high & 255, low >> 8, low & 255].join('.');
}

/**
 * Why this IP address may not be fetched from (loopback, private, link-local, ...), or undefined
 * when it is a public address. IPv4-mapped and NAT64 IPv6 addresses are judged by their IPv4 part.
 * Anything that is not an IP address is refused.
 */
export function blockedAddressReason(address: string): string | undefined {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) return 'not an IP address';
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const embedded = family === 6 ? nat64Embedded(bare) : undefined;
  if (embedded) return blockedAddressReason(embedded);
  if (!blocked.check(bare, type)) return undefined;
  return reasons.find(({ list }) => list.check(bare, type))?.reason ?? 'not a public address';
}

/** Refused by the guard: the message names the address class, never more than the host. */
export class BlockedAddressError extends Error {
  readonly code = 'EADDRBLOCKED';
  constructor(
    readonly host: string,
    readonly reason: string,
  ) {
    super(`${host} is a ${reason} address`);
  }
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for http(s).request / net.connect that resolves as usual and then refuses the
 * connection when any resolved address is not public. With `allowPrivate` it is plain dns.lookup.
 */
export function guardedLookup(allowPrivate: boolean) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, options.all ? [] : '', undefined);
      const list = addresses as LookupAddress[];
      if (!allowPrivate) {
        for (const entry of list) {
          const reason = blockedAddressReason(entry.address);
          if (reason) return callback(new BlockedAddressError(hostname, reason), options.all ? [] : '', undefined);
        }
      }
      if (options.all) return callback(null, list);
      const first = list[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '', undefined);
      callback(null, first.address, first.family);
    });
  };
}

#!/usr/bin/env python3
"""The peak (or the first detailed, e.g. from `vgdb PID detailed_snapshot FILE`) heap snapshot of a
massif output file, grouped by the first Blaze/tokio frame of each allocation site (and its two callers).

    python3 scripts/massif-group.py MASSIF_FILE CONNECTIONS
"""
import re, sys, collections
path, conns = sys.argv[1], int(sys.argv[2])
lines = open(path).read().split('\n')
# find peak snapshot
i = 0; snap = None
while i < len(lines):
    if lines[i].startswith('snapshot='):
        hdr = {}
        j = i + 1
        while j < len(lines) and (lines[j].startswith('#') or ('=' in lines[j] and not lines[j].startswith('snapshot='))):
            if not lines[j].startswith('#'):
                k, v = lines[j].split('=', 1); hdr[k] = v
            j += 1
        if hdr.get('heap_tree') in ('peak', 'detailed'):
            snap = (hdr, j); break
    i += 1
hdr, start = snap
node_re = re.compile(r'^( *)n(\d+): (\d+) (.*)$')
def parse(idx):
    m = node_re.match(lines[idx]); ind, n, b, rest = m.groups()
    fn = rest
    mm = re.match(r'0x[0-9A-F]+: (.*?) \((?:in|[^)]*:\d+)', rest)
    mm = re.match(r'0x[0-9A-Fa-f]+: (.*) \(', rest)
    if mm: fn = mm.group(1)
    node = {'fn': fn, 'bytes': int(b), 'kids': []}
    idx += 1
    for _ in range(int(n)):
        kid, idx = parse(idx); node['kids'].append(kid)
    return node, idx
root, _ = parse(start)
def short(fn):
    fn = re.sub(r'<[^<>]*(?:<[^<>]*(?:<[^<>]*>[^<>]*)*>[^<>]*)*>', lambda m: m.group(0) if len(m.group(0)) < 90 else '<..>', fn)
    return fn[:100]
interesting = re.compile(r'blaze_|tokio::|tracing|sharded_slab|hashbrown')
groups = collections.Counter()
def walk(node, label):
    # label: list of frames once matched
    if label is None and interesting.search(node['fn']) and 'alloc::' not in node['fn'][:12] and not node['fn'].startswith('hashbrown') :
        label = [node['fn']]
    elif label is not None and len(label) < 3:
        label = label + [node['fn']]
    if label is not None and (len(label) >= 3 or not node['kids']):
        groups[' <- '.join(short(f) for f in label)] += node['bytes']; return
    if not node['kids']:
        groups['(other) ' + short(node['fn'])] += node['bytes']; return
    rest = node['bytes'] - sum(k['bytes'] for k in node['kids'])
    if rest and label is not None: groups[' <- '.join(short(f) for f in label)] += rest
    elif rest: groups['(other)'] += rest
    for k in node['kids']: walk(k, label)
for k in root['kids']: walk(k, None)
print(f"# mem_heap_B={hdr['mem_heap_B']} mem_heap_extra_B={hdr['mem_heap_extra_B']}  ({int(hdr['mem_heap_B'])/conns:.1f} + {int(hdr['mem_heap_extra_B'])/conns:.1f} B/conn over {conns})")
print(f"{'bytes':>9} {'B/conn':>7}  allocation site")
other = 0
for lab, b in groups.most_common():
    if b / conns < 3: other += b; continue
    print(f"{b:>9} {b/conns:>7.1f}  {lab}")
print(f"{other:>9} {other/conns:>7.1f}  (sites under 3 B/conn)")

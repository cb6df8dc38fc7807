//! The inputs of the real-program workloads: every byte comes from a seeded SplitMix64, so
//! one seed and one scale give the same files on every machine and every invocation.

use std::fmt::Write as _;
use std::io::{self, Write};

/// SplitMix64: small, fast, and the same sequence everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `lo..=hi` lowercase letters.
    fn word(&mut self, lo: u64, hi: u64) -> String {
        let n = self.range(lo, hi);
        (0..n)
            .map(|_| (b'a' + self.range(0, 25) as u8) as char)
            .collect()
    }
}

/// The Python program: builds `argv[1]` nested records (dicts of lists of dicts, strings,
/// ints, floats) from `random.Random(argv[2])`, then `argv[3]` rounds of json dumps/loads and
/// pickle dumps/loads of the whole list, re-sorting it between rounds. Its last line:
/// `python-ok <records> <distinct names> <json bytes> <pickle bytes> <digest>`.
pub const PYTHON_SCRIPT: &str = r#"import hashlib, json, pickle, random, sys

n, seed, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
letters = "abcdefghijklmnopqrstuvwxyz"
words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 12))) for _ in range(4096)]


def record(i):
    return {
        "id": i,
        "name": rng.choice(words) + " " + rng.choice(words),
        "tags": [rng.choice(words) for _ in range(rng.randint(0, 8))],
        "scores": [round(rng.random() * 1000, 3) for _ in range(rng.randint(1, 10))],
        "attrs": {rng.choice(words): rng.randint(0, 1 << 40) for _ in range(rng.randint(0, 6))},
        "children": [
            {
                "k": rng.choice(words),
                "v": [rng.randint(0, 999) for _ in range(rng.randint(0, 6))],
                "ok": rng.random() < 0.5,
            }
            for _ in range(rng.randint(0, 4))
        ],
    }


data = [record(i) for i in range(n)]
by_name = {}
for r in data:
    by_name.setdefault(r["name"], []).append(r["id"])
json_bytes = pickle_bytes = 0
digest = hashlib.sha256()
for k in range(rounds):
    text = json.dumps(data)
    json_bytes += len(text)
    if k == 0:
        digest.update(text.encode())
    data = json.loads(text)
    del text
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_bytes += len(blob)
    data = pickle.loads(blob)
    del blob
    data.sort(key=lambda r: (len(r["tags"]), r["name"], -r["id"]))
assert len(data) == n
print("python-ok", n, len(by_name), json_bytes, pickle_bytes, digest.hexdigest()[:16])
"#;

/// The SQL script for `sqlite3`: a table of `rows` rows inserted one statement each inside
/// one transaction, two indexes, then `lookups` point queries, `lookups / 10` range
/// queries, prefix scans, a group-by, an unindexed sort, an update and a delete; the last
/// output line is `sqlite-ok|<rows left>|<sum of v>`.
pub fn sqlite_script(seed: u64, rows: u64, lookups: u64, out: &mut impl Write) -> io::Result<()> {
    let mut rng = Rng::new(seed);
    let keys = (rows / 4).max(1);
    let mut line = String::with_capacity(256);
    writeln!(
        out,
        "PRAGMA journal_mode=MEMORY;\nPRAGMA synchronous=OFF;\nPRAGMA cache_size=-65536;\n\
         CREATE TABLE item(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, name TEXT NOT NULL, \
         v REAL NOT NULL, payload TEXT NOT NULL);\nBEGIN;"
    )?;
    for _ in 0..rows {
        line.clear();
        let k = rng.range(0, keys - 1);
        let name = format!("{} {}", rng.word(2, 9), rng.word(2, 9));
        let v = rng.range(0, 1_000_000) as f64 / 1000.0;
        let payload = rng.word(20, 120);
        let _ = writeln!(
            line,
            "INSERT INTO item(k, name, v, payload) VALUES({k}, '{name}', {v}, '{payload}');"
        );
        out.write_all(line.as_bytes())?;
    }
    writeln!(
        out,
        "COMMIT;\nCREATE INDEX item_k ON item(k);\nCREATE INDEX item_name ON item(name, v);"
    )?;
    for _ in 0..lookups {
        let k = rng.range(0, keys - 1);
        writeln!(
            out,
            "SELECT count(*), round(total(v), 3) FROM item WHERE k = {k};"
        )?;
    }
    for _ in 0..(lookups / 10).max(1) {
        let a = rng.range(0, keys - 1);
        let b = a + rng.range(1, 200);
        let p = rng.word(2, 2);
        writeln!(
            out,
            "SELECT count(*), round(avg(v), 3) FROM item WHERE k BETWEEN {a} AND {b};\n\
             SELECT count(*), max(v) FROM item WHERE name >= '{p}' AND name < '{p}z';"
        )?;
    }
    writeln!(
        out,
        "SELECT k % 97 AS g, count(*), round(avg(v), 3) FROM item GROUP BY g ORDER BY 2 DESC, 1 LIMIT 3;\n\
         SELECT count(DISTINCT name) FROM item;\n\
         SELECT id, substr(payload, 1, 8) FROM item ORDER BY payload, id LIMIT 3 OFFSET 1000;\n\
         UPDATE item SET v = v * 1.5 WHERE k % 13 = 0;\n\
         DELETE FROM item WHERE k % 17 = 0;\n\
         SELECT 'sqlite-ok', count(*), round(total(v), 3) FROM item;"
    )?;
    Ok(())
}

/// The generated C project: `files` translation units of `functions` functions each (hash
/// loops, shell sorts of structs, switch state machines, polynomials, matrix products, string
/// building and parsing, tree inserts, CRC tables), a shared header, a `main.c` that calls
/// every unit and prints `gcc-ok <checksum>`, and a Makefile building `prog` with `-O2`.
/// Returns `(file name, contents)` pairs.
pub fn c_project(seed: u64, files: usize, functions: usize) -> Vec<(String, String)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut header = String::from(
        "#ifndef GEN_COMMON_H\n#define GEN_COMMON_H\n#include <stddef.h>\n#include <stdint.h>\n\
         #include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n\
         #define MIX(a, b) (((a) ^ (b)) * 0x9E3779B97F4A7C15ul + ((a) >> 29))\n\n",
    );
    for i in 0..files {
        let _ = writeln!(header, "unsigned long unit_{i}(unsigned long seed);");
    }
    header.push_str("\n#endif\n");
    out.push(("common.h".to_string(), header));

    for i in 0..files {
        let mut src = String::from("#include \"common.h\"\n\n");
        let mut calls = Vec::new();
        // Every file cycles through the templates from a random start, with random sizes
        // and constants in each.
        let start = rng.range(0, 7);
        for j in 0..functions {
            let t = (start + j as u64) % 8;
            calls.push(c_function(&mut src, &mut rng, t, i, j));
        }
        let _ = writeln!(
            src,
            "unsigned long unit_{i}(unsigned long seed) {{\n    unsigned long acc = seed ^ {}ul;",
            rng.next_u64() >> 1
        );
        for c in calls {
            let _ = writeln!(src, "    acc = MIX(acc, (unsigned long)({c}));");
        }
        src.push_str("    return acc;\n}\n");
        out.push((format!("f{i:03}.c"), src));
    }

    let mut main = String::from(
        "#include \"common.h\"\n\nint main(void) {\n    unsigned long acc = 1469598103934665603ul;\n",
    );
    for i in 0..files {
        let _ = writeln!(main, "    acc = MIX(acc, unit_{i}(acc));");
    }
    main.push_str("    printf(\"gcc-ok %lu\\n\", acc);\n    return 0;\n}\n");
    out.push(("main.c".to_string(), main));

    let objs: Vec<String> = (0..files)
        .map(|i| format!("f{i:03}.o"))
        .chain(std::iter::once("main.o".to_string()))
        .collect();
    let make = format!(
        "CC ?= gcc\nCFLAGS = -O2 -Wall\nOBJS = {}\n\nprog: $(OBJS)\n\t$(CC) -o prog $(OBJS)\n\n\
         %.o: %.c common.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\nclean:\n\trm -f prog $(OBJS)\n",
        objs.join(" ")
    );
    out.push(("Makefile".to_string(), make));
    out
}

/// Appends one function of template `t` to `src`; returns the expression that calls it
/// (with `seed` in scope).
fn c_function(src: &mut String, rng: &mut Rng, t: u64, i: usize, j: usize) -> String {
    let id = format!("{i}_{j}");
    let mut r = |lo, hi| rng.range(lo, hi);
    match t {
        0 => {
            let (rot, sh, n) = (r(1, 31), r(1, 31), r(64, 512));
            let _ = writeln!(
                src,
                "static unsigned hash_{id}(unsigned long seed) {{\n\
                 \x20   unsigned char buf[{n}];\n\
                 \x20   for (int i = 0; i < {n}; i++) buf[i] = (unsigned char)(seed >> (i % 56)) ^ (unsigned char)i;\n\
                 \x20   unsigned h = 2166136261u ^ (unsigned)seed;\n\
                 \x20   for (int i = 0; i < {n}; i++) {{\n\
                 \x20       h ^= buf[i];\n\
                 \x20       h *= 16777619u;\n\
                 \x20       h = (h << {rot}) | (h >> (32 - {rot}));\n\
                 \x20   }}\n\
                 \x20   return h ^ (h >> {sh});\n}}\n"
            );
            format!("hash_{id}(seed)")
        }
        1 => {
            let n = r(32, 160);
            let (a, c) = (r(1, 1 << 20) * 2 + 1, r(1, 1 << 30));
            let _ = writeln!(
                src,
                "typedef struct {{ int key; double w; char tag[12]; }} rec_{id};\n\n\
                 static void sort_{id}(rec_{id} *v, int n) {{\n\
                 \x20   static const int gaps[] = {{ 57, 23, 10, 4, 1 }};\n\
                 \x20   for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {{\n\
                 \x20       int gap = gaps[g];\n\
                 \x20       for (int i = gap; i < n; i++) {{\n\
                 \x20           rec_{id} t = v[i];\n\
                 \x20           int k = i;\n\
                 \x20           while (k >= gap && (v[k - gap].key > t.key || (v[k - gap].key == t.key && v[k - gap].w > t.w))) {{\n\
                 \x20               v[k] = v[k - gap];\n\
                 \x20               k -= gap;\n\
                 \x20           }}\n\
                 \x20           v[k] = t;\n\
                 \x20       }}\n\
                 \x20   }}\n}}\n\n\
                 static double sorted_{id}(unsigned long seed) {{\n\
                 \x20   rec_{id} v[{n}];\n\
                 \x20   unsigned long x = seed | 1;\n\
                 \x20   for (int i = 0; i < {n}; i++) {{\n\
                 \x20       x = x * {a}ul + {c}ul;\n\
                 \x20       v[i].key = (int)(x >> 40) % 1000;\n\
                 \x20       v[i].w = (double)(x & 0xffff) / 65536.0;\n\
                 \x20       snprintf(v[i].tag, sizeof v[i].tag, \"t%d\", i);\n\
                 \x20   }}\n\
                 \x20   sort_{id}(v, {n});\n\
                 \x20   double s = 0;\n\
                 \x20   for (int i = 0; i < {n}; i++) s += v[i].key * (i + 1) + v[i].w + v[i].tag[1];\n\
                 \x20   return s;\n}}\n"
            );
            format!("sorted_{id}(seed)")
        }
        2 => {
            let states = r(4, 9);
            let _ = writeln!(
                src,
                "static int fsm_{id}(unsigned long seed) {{\n\
                 \x20   int st = 0, acc = 0;\n\
                 \x20   for (int i = 0; i < 400; i++) {{\n\
                 \x20       unsigned in = (unsigned)((seed >> (i % 61)) ^ (unsigned long)(i * 2654435761u));\n\
                 \x20       switch (st) {{"
            );
            for s in 0..states {
                let (bit, to1, to2, add, x) = (
                    r(0, 15),
                    r(0, states - 1),
                    r(0, states - 1),
                    r(1, 999),
                    r(1, 0xffff),
                );
                let _ = writeln!(
                    src,
                    "        case {s}:\n\
                     \x20           if (in & (1u << {bit})) {{ st = {to1}; acc += {add}; }}\n\
                     \x20           else {{ st = {to2}; acc ^= {x}; }}\n\
                     \x20           break;"
                );
            }
            let _ = writeln!(
                src,
                "        default:\n            st = 0;\n            break;\n        }}\n    }}\n    return acc;\n}}\n"
            );
            format!("fsm_{id}(seed)")
        }
        3 => {
            let deg = r(4, 12);
            let coefs: Vec<String> = (0..=deg)
                .map(|_| format!("{:.6}", r(0, 2_000_000) as f64 / 1e6 - 1.0))
                .collect();
            let _ = writeln!(
                src,
                "static double poly_{id}(unsigned long seed) {{\n\
                 \x20   static const double c[] = {{ {} }};\n\
                 \x20   double sum = 0;\n\
                 \x20   for (int k = 0; k < 200; k++) {{\n\
                 \x20       double x = (double)((seed + (unsigned long)k * 7919u) % 2000) / 1000.0 - 1.0;\n\
                 \x20       double y = 0;\n\
                 \x20       for (size_t d = 0; d < sizeof c / sizeof c[0]; d++) y = y * x + c[d];\n\
                 \x20       sum += y;\n\
                 \x20   }}\n\
                 \x20   return sum;\n}}\n",
                coefs.join(", ")
            );
            format!("(long)(poly_{id}(seed) * 1000.0)")
        }
        4 => {
            let m = r(6, 20);
            let _ = writeln!(
                src,
                "static long matmul_{id}(unsigned long seed) {{\n\
                 \x20   long a[{m}][{m}], b[{m}][{m}], c[{m}][{m}];\n\
                 \x20   for (int i = 0; i < {m}; i++)\n\
                 \x20       for (int k = 0; k < {m}; k++) {{\n\
                 \x20           a[i][k] = (long)((seed >> ((i + k) % 50)) & 0xff) - 128;\n\
                 \x20           b[i][k] = (long)(i * {m} + k) % 17 - 8;\n\
                 \x20       }}\n\
                 \x20   for (int i = 0; i < {m}; i++)\n\
                 \x20       for (int k = 0; k < {m}; k++) {{\n\
                 \x20           long s = 0;\n\
                 \x20           for (int t = 0; t < {m}; t++) s += a[i][t] * b[t][k];\n\
                 \x20           c[i][k] = s;\n\
                 \x20       }}\n\
                 \x20   long tr = 0;\n\
                 \x20   for (int i = 0; i < {m}; i++) tr += c[i][i] * (i + 1) + c[i][{m} - 1 - i];\n\
                 \x20   return tr;\n}}\n"
            );
            format!("matmul_{id}(seed)")
        }
        5 => {
            let n = r(8, 40);
            let sep = [',', ';', ':', '|'][r(0, 3) as usize];
            let _ = writeln!(
                src,
                "static unsigned long text_{id}(unsigned long seed) {{\n\
                 \x20   char buf[{n} * 24];\n\
                 \x20   size_t len = 0;\n\
                 \x20   for (int i = 0; i < {n}; i++)\n\
                 \x20       len += (size_t)snprintf(buf + len, sizeof buf - len, \"%lu{sep}\", (seed >> (i % 40)) % 100000);\n\
                 \x20   unsigned long sum = len;\n\
                 \x20   char *p = buf;\n\
                 \x20   while (p && *p) {{\n\
                 \x20       char *q = strchr(p, '{sep}');\n\
                 \x20       if (q) *q = 0;\n\
                 \x20       sum = sum * 31 + strtoul(p, NULL, 10) + strlen(p);\n\
                 \x20       p = q ? q + 1 : NULL;\n\
                 \x20   }}\n\
                 \x20   return sum;\n}}\n"
            );
            format!("text_{id}(seed)")
        }
        6 => {
            let n = r(64, 256);
            let _ = writeln!(
                src,
                "struct node_{id} {{ int key, left, right, depth; }};\n\n\
                 static int tree_{id}(unsigned long seed) {{\n\
                 \x20   struct node_{id} pool[{n}];\n\
                 \x20   int used = 1, maxd = 0;\n\
                 \x20   pool[0].key = (int)(seed % 1000);\n\
                 \x20   pool[0].left = pool[0].right = -1;\n\
                 \x20   pool[0].depth = 0;\n\
                 \x20   for (int i = 1; i < {n}; i++) {{\n\
                 \x20       int key = (int)(((seed >> (i % 33)) * 2654435761u + (unsigned long)i) % 1000);\n\
                 \x20       int at = 0;\n\
                 \x20       for (;;) {{\n\
                 \x20           int *next = key < pool[at].key ? &pool[at].left : &pool[at].right;\n\
                 \x20           if (*next < 0) {{\n\
                 \x20               *next = used;\n\
                 \x20               pool[used].key = key;\n\
                 \x20               pool[used].left = pool[used].right = -1;\n\
                 \x20               pool[used].depth = pool[at].depth + 1;\n\
                 \x20               if (pool[used].depth > maxd) maxd = pool[used].depth;\n\
                 \x20               used++;\n\
                 \x20               break;\n\
                 \x20           }}\n\
                 \x20           at = *next;\n\
                 \x20       }}\n\
                 \x20   }}\n\
                 \x20   return maxd * 1000 + used;\n}}\n"
            );
            format!("tree_{id}(seed)")
        }
        _ => {
            let poly = [0xEDB8_8320u64, 0x82F6_3B78, 0xEB31_D82E][r(0, 2) as usize];
            let n = r(100, 600);
            let _ = writeln!(
                src,
                "static uint32_t crc_{id}(unsigned long seed) {{\n\
                 \x20   uint32_t table[256];\n\
                 \x20   for (uint32_t i = 0; i < 256; i++) {{\n\
                 \x20       uint32_t c = i;\n\
                 \x20       for (int k = 0; k < 8; k++) c = (c & 1) ? 0x{poly:08X}u ^ (c >> 1) : c >> 1;\n\
                 \x20       table[i] = c;\n\
                 \x20   }}\n\
                 \x20   uint32_t crc = 0xFFFFFFFFu;\n\
                 \x20   for (int i = 0; i < {n}; i++) {{\n\
                 \x20       unsigned char b = (unsigned char)((seed >> (i % 57)) + (unsigned long)i);\n\
                 \x20       crc = table[(crc ^ b) & 0xff] ^ (crc >> 8);\n\
                 \x20   }}\n\
                 \x20   return crc ^ 0xFFFFFFFFu;\n}}\n"
            );
            format!("crc_{id}(seed)")
        }
    }
}

/// Random text lines for `sort` until `bytes` bytes: 1 to 6 mixed-case words and, on half
/// of the lines, a number. Returns the number of lines written.
pub fn sort_lines(seed: u64, bytes: u64, out: &mut impl Write) -> io::Result<u64> {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = Rng::new(seed);
    let mut written = 0u64;
    let mut lines = 0u64;
    let mut line = Vec::with_capacity(128);
    while written < bytes {
        line.clear();
        for w in 0..rng.range(1, 6) {
            if w > 0 {
                line.push(b' ');
            }
            for _ in 0..rng.range(1, 12) {
                line.push(ALPHA[rng.range(0, ALPHA.len() as u64 - 1) as usize]);
            }
        }
        if rng.next_u64() & 1 == 0 {
            let _ = write!(line, " {}", rng.range(0, 9_999_999));
        }
        line.push(b'\n');
        out.write_all(&line)?;
        written += line.len() as u64;
        lines += 1;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
        })
    }

    #[test]
    fn rng_is_splitmix64() {
        // The first outputs of SplitMix64 from seed 0, as published with the algorithm.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut r = Rng::new(7);
        assert!(
            (0..1000)
                .map(|_| r.range(3, 5))
                .all(|x| (3..=5).contains(&x))
        );
    }

    #[test]
    fn sort_input_is_deterministic() {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let na = sort_lines(1, 100_000, &mut a).unwrap();
        let nb = sort_lines(1, 100_000, &mut b).unwrap();
        sort_lines(2, 100_000, &mut c).unwrap();
        assert_eq!(a, b);
        assert_eq!(na, nb);
        assert_ne!(a, c, "another seed, other lines");
        assert!(a.len() >= 100_000 && a.len() < 100_200);
        assert_eq!(a.iter().filter(|&&x| x == b'\n').count() as u64, na);
        assert!(a.ends_with(b"\n"));
        // A fixed seed gives fixed bytes: the input of a recorded run can be rebuilt.
        assert_eq!(fnv(&a), fnv(&b));
    }

    #[test]
    fn sql_script_is_deterministic() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        sqlite_script(9, 500, 50, &mut a).unwrap();
        sqlite_script(9, 500, 50, &mut b).unwrap();
        assert_eq!(a, b);
        let s = String::from_utf8(a).unwrap();
        assert_eq!(s.matches("INSERT INTO item").count(), 500);
        assert_eq!(s.matches("WHERE k = ").count(), 50);
        assert!(s.trim_end().ends_with("FROM item;"));
        assert!(s.contains("BEGIN;") && s.contains("COMMIT;"));
    }

    #[test]
    fn c_project_is_deterministic() {
        let a = c_project(3, 5, 8);
        assert_eq!(a, c_project(3, 5, 8));
        assert_ne!(a, c_project(4, 5, 8));
        let names: Vec<&str> = a.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "common.h", "f000.c", "f001.c", "f002.c", "f003.c", "f004.c", "main.c", "Makefile"
            ]
        );
        let make = &a.last().unwrap().1;
        assert!(make.contains("OBJS = f000.o f001.o f002.o f003.o f004.o main.o"));
        assert!(make.contains("\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"), "{make}");
    }

    /// The generated C compiles cleanly (needs a C compiler; skipped without one).
    #[test]
    fn c_project_compiles() {
        let Some(cc) = crate::util::which("gcc").or_else(|| crate::util::which("cc")) else {
            eprintln!("SKIP c_project_compiles: no gcc/cc");
            return;
        };
        struct Cleanup(std::path::PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("hakmem-apps-cgen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = Cleanup(dir.clone());
        // Every template in every file of 8 functions or more.
        let files = c_project(11, 2, 10);
        let all: String = files.iter().map(|f| f.1.as_str()).collect();
        for t in [
            "hash_", "sorted_", "fsm_", "poly_", "matmul_", "text_", "tree_", "crc_",
        ] {
            assert!(all.contains(&format!(" {t}")), "no {t}");
        }
        for (name, body) in files {
            std::fs::write(dir.join(name), body).unwrap();
        }
        let out = std::process::Command::new(cc)
            .current_dir(&dir)
            .args([
                "-O0", "-Wall", "-Wextra", "-Werror", "-o", "prog", "f000.c", "f001.c", "main.c",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = std::process::Command::new(dir.join("prog"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&run.stdout).to_string();
        assert!(text.starts_with("gcc-ok "), "{text}");
    }
}

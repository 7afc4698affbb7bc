import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/config.ts";
import { parseDuration } from "../../src/util/duration.ts";
import { loadCheckedConfig } from "../../src/cli/config.ts";

const dir = mkdtempSync(join(tmpdir(), "strata-config-"));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe("configuration", () => {
  test("defaults serve SQLite on loopback", () => {
    const c = loadConfig([], {});
    expect(c.listen).toBe("http://127.0.0.1:2379");
    expect(c.backend).toBe("sqlite://./strata.db");
    expect(c["max-txn-ops"]).toBe(128);
    expect(c.autoCompaction).toEqual({ mode: "periodic", retentionMs: 3_600_000 });
  });
  test("overload: etcd's 7 s request timeout and a generous queue by default; both settable, bad values named", () => {
    const c = loadConfig([], {});
    expect(c["request-timeout"]).toBe(7000);
    expect(c["max-waiting-requests"]).toBe(5000);
    expect(loadConfig(["--request-timeout", "2s"], {})["request-timeout"]).toBe(2000);
    expect(loadConfig([], { STRATA_MAX_WAITING_REQUESTS: "100" })["max-waiting-requests"]).toBe(100);
    expect(loadConfig(["--config", file("o.yaml", "request-timeout: 30s\nmax-waiting-requests: 20000\n")], {})).toMatchObject({
      "request-timeout": 30_000,
      "max-waiting-requests": 20_000,
    });
    expect(() => loadConfig(["--request-timeout", "0s"], {})).toThrow("flag --request-timeout: request-timeout must be longer than 0");
    expect(() => loadConfig(["--request-timeout", "soon"], {})).toThrow("request-timeout must be a duration");
    expect(() => loadConfig(["--max-waiting-requests", "0"], {})).toThrow("max-waiting-requests must be a positive whole number");
  });
  test("quota-backend-bytes: etcd's meaning of 0 and of negative numbers, whole bytes only", () => {
    expect(loadConfig([], {})["quota-backend-bytes"]).toBe(0);
    expect(loadConfig(["--quota-backend-bytes", "16777216"], {})["quota-backend-bytes"]).toBe(16777216);
    expect(loadConfig(["--quota-backend-bytes=-1"], {})["quota-backend-bytes"]).toBe(-1);
    expect(loadConfig([], { STRATA_QUOTA_BACKEND_BYTES: "1048576" })["quota-backend-bytes"]).toBe(1048576);
    expect(loadConfig(["--config", file("q.yaml", "quota-backend-bytes: 8589934592\n")], {})["quota-backend-bytes"]).toBe(8589934592);
    for (const bad of ["2GiB", "1.5", "", "9007199254740993"]) {
      expect(() => loadConfig([`--quota-backend-bytes=${bad}`], {})).toThrow(
        `flag --quota-backend-bytes: quota-backend-bytes must be a whole number of bytes (0: the default, below 0: no quota) (got "${bad}")`,
      );
    }
  });
  test("flags beat the environment, which beats the file", () => {
    const f = file("a.yaml", "listen: http://127.0.0.1:1\nbackend: sqlite://file.db\nname: from-file\n");
    const c = loadConfig(["--config", f, "--listen", "http://127.0.0.1:3"], {
      STRATA_LISTEN: "http://127.0.0.1:2",
      STRATA_BACKEND: "sqlite://env.db",
    });
    expect(c.listen).toBe("http://127.0.0.1:3");
    expect(c.backend).toBe("sqlite://env.db");
    expect(c.name).toBe("from-file");
  });
  test("a bad value names its source and setting", () => {
    const f = file("b.yaml", "max-txn-ops: -4\n");
    expect(() => loadConfig(["--config", f], {})).toThrow(`${f}: max-txn-ops: max-txn-ops must be a positive whole number`);
    expect(() => loadConfig(["--backend", "mongodb://x"], {})).toThrow("flag --backend: backend must be a URL starting with sqlite://");
    expect(() => loadConfig([], { STRATA_WATCH_PROGRESS_NOTIFY_INTERVAL: "soon" })).toThrow(
      "environment STRATA_WATCH_PROGRESS_NOTIFY_INTERVAL: watch-progress-notify-interval must be a duration",
    );
  });
  test("an unknown setting in the file is refused", () => {
    const f = file("c.json", JSON.stringify({ listn: "http://x" }));
    expect(() => loadConfig(["--config", f], {})).toThrow('unknown setting "listn"');
  });
  test("a broken file says where", () => {
    const f = file("d.yaml", "listen: [unclosed\n");
    expect(() => loadConfig(["--config", f], {})).toThrow(`${f}: not valid YAML`);
    expect(() => loadConfig(["--config", join(dir, "missing.yaml")], {})).toThrow("cannot read config file");
  });
  test("unknown flags are refused", () => {
    expect(() => loadConfig(["--lisen", "x"], {})).toThrow("see strata serve --help");
  });
  test("auto compaction: hours, durations, revisions, off", () => {
    expect(loadConfig(["--auto-compaction-retention", "2"], {}).autoCompaction).toEqual({ mode: "periodic", retentionMs: 7_200_000 });
    expect(loadConfig(["--auto-compaction-retention", "30m"], {}).autoCompaction).toEqual({ mode: "periodic", retentionMs: 1_800_000 });
    expect(loadConfig(["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1000"], {}).autoCompaction)
      .toEqual({ mode: "revision", retention: 1000n });
    expect(loadConfig(["--auto-compaction-retention", "0"], {}).autoCompaction).toBeUndefined();
    expect(() => loadConfig(["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"], {})).toThrow("number of revisions");
  });
  test("durations", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("10")).toBeUndefined();
    expect(parseDuration("5 minutes")).toBeUndefined();
  });
  test("TLS: etcd's four settings from flags, environment or file", () => {
    const https = ["--listen", "https://127.0.0.1:2379"];
    expect(loadConfig([], {}).tls).toBeUndefined();
    expect(loadConfig([...https, "--cert-file", "s.crt", "--key-file", "s.key"], {}).tls)
      .toEqual({ certFile: "s.crt", keyFile: "s.key", trustedCaFile: undefined, clientCertAuth: false, crlFile: undefined, ciphers: undefined, selfSigned: undefined });
    const all = { certFile: "s.crt", keyFile: "s.key", trustedCaFile: "ca.crt", clientCertAuth: true, crlFile: undefined, ciphers: undefined, selfSigned: undefined };
    expect(loadConfig([...https, "--cert-file", "s.crt", "--key-file", "s.key", "--trusted-ca-file", "ca.crt", "--client-cert-auth"], {}).tls)
      .toEqual(all);
    expect(loadConfig([], {
      STRATA_LISTEN: "https://0.0.0.0:2379", STRATA_CERT_FILE: "s.crt", STRATA_KEY_FILE: "s.key",
      STRATA_TRUSTED_CA_FILE: "ca.crt", STRATA_CLIENT_CERT_AUTH: "true",
    }).tls).toEqual(all);
    const f = file("tls.yaml", "listen: https://0.0.0.0:2379\ncert-file: s.crt\nkey-file: s.key\ntrusted-ca-file: ca.crt\nclient-cert-auth: true\n");
    expect(loadConfig(["--config", f], {}).tls).toEqual(all);
  });
  test("TLS: etcd's --cipher-suites names become OpenSSL's", () => {
    const https = ["--listen", "https://127.0.0.1:2379", "--cert-file", "s.crt", "--key-file", "s.key"];
    expect(loadConfig([...https, "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"], {}).tls?.ciphers)
      .toBe("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305");
  });
  test("TLS: --auto-tls without certificate files, for the hosts of the listen and advertised URLs", () => {
    const tls = loadConfig(["--listen", "https://127.0.0.1:2379", "--advertise-client-urls", "https://localhost:2379,https://[::1]:2379", "--auto-tls"], {}).tls;
    expect(tls?.selfSigned).toEqual({ hosts: ["127.0.0.1", "localhost", "::1"] });
    // certificate files win, as in etcd
    expect(loadConfig(["--listen", "https://h:1", "--cert-file", "s.crt", "--key-file", "s.key", "--auto-tls"], {}).tls?.selfSigned).toBeUndefined();
    expect(() => loadConfig(["--auto-tls"], {})).toThrow("flag --auto-tls: --auto-tls needs an https:// listen URL (listen is http://127.0.0.1:2379)");
  });
  test("TLS: --client-cert-auth=true and =false as etcd's flags are written", () => {
    const base = ["--listen", "https://h:2379", "--cert-file", "s.crt", "--key-file", "s.key", "--trusted-ca-file", "ca.crt"];
    expect(loadConfig([...base, "--client-cert-auth=true"], {}).tls?.clientCertAuth).toBe(true);
    expect(loadConfig([...base, "--client-cert-auth=false"], { STRATA_CLIENT_CERT_AUTH: "true" }).tls?.clientCertAuth).toBe(false);
    expect(() => loadConfig([...base, "--client-cert-auth=yes"], {})).toThrow("flag --client-cert-auth: client-cert-auth must be true or false");
  });
  test("TLS: settings that do not fit together are refused, naming where they came from", () => {
    expect(() => loadConfig(["--listen", "https://h:1", "--cert-file", "s.crt"], {})).toThrow("flag --cert-file: --key-file is needed too");
    expect(() => loadConfig(["--listen", "https://h:1", "--key-file", "s.key"], {})).toThrow("flag --key-file: --cert-file is needed too");
    expect(() => loadConfig(["--listen", "https://h:1", "--cert-file", "s.crt", "--key-file", "s.key", "--client-cert-auth"], {}))
      .toThrow("flag --client-cert-auth: --client-cert-auth needs --trusted-ca-file");
    expect(() => loadConfig(["--cert-file", "s.crt", "--key-file", "s.key"], {}))
      .toThrow("flag --cert-file: with --cert-file the listen URL must start with https:// (listen is http://127.0.0.1:2379)");
    expect(() => loadConfig([], { STRATA_LISTEN: "https://h:1" })).toThrow("environment STRATA_LISTEN: an https:// listen URL needs --cert-file and --key-file");
    expect(() => loadConfig(["--trusted-ca-file", "ca.crt"], {})).toThrow("flag --trusted-ca-file: TLS needs --cert-file and --key-file");
    expect(() => loadConfig(["--listen", "grpc://h:1"], {})).toThrow("listen must be a URL starting with http:// or https://");
    expect(() => loadConfig(["--listen", "https://h:1", "--cert-file", "s.crt", "--key-file", "s.key", "--trusted-ca-file", "ca.crt", "--client-crl-file", "r.crl"], {}))
      .toThrow("flag --client-crl-file: --client-crl-file needs --client-cert-auth");
    expect(() => loadConfig(["--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"], {})).toThrow("flag --cipher-suites: TLS needs --cert-file and --key-file");
    expect(() => loadConfig(["--listen", "https://h:1", "--cert-file", "s.crt", "--key-file", "s.key", "--cipher-suites", "TLS_RSA_WITH_RC4_128_SHA"], {}))
      .toThrow(`flag --cipher-suites: unknown or unsupported TLS cipher suite "TLS_RSA_WITH_RC4_128_SHA"`);
  });
});

describe("routes beside an upstream etcd take whole resources", () => {
  const topology = (route: string) =>
    file(`up-${Math.random().toString(36).slice(2)}.yaml`, `backends:\n  core: etcd://127.0.0.1:2379\n  db: sqlite://x.db\ndefault: core\nroutes:\n  - match: ${route}\n    backend: db\n`);
  test.each([
    "{ resource: events }",
    "{ group: stable.example.com, resource: shirts }",
    "{ group: stable.example.com }",
    "{ prefix: /registry/events/ }",
    "{ prefix: /registry/services/ }",
    "{ prefix: /registry/stable.example.com/shirts/ }",
    "{ prefix: /registry/stable.example.com/ }",
  ])("%s is accepted", (route) => {
    expect(() => loadCheckedConfig(["--config", topology(route)], {})).not.toThrow();
  });
  test.each([
    ['{ resource: pods, namespace: "team-*" }', 'match.namespace "team-*"'],
    ['{ key: "^/registry/secrets/prod-" }', 'match.key "^/registry/secrets/prod-"'],
    ["{ prefix: /registry/pods/kube-system/ }", 'match.prefix "/registry/pods/kube-system/"'],
    ["{ prefix: /registry/services/specs/ }", 'match.prefix "/registry/services/specs/"'],
    ["{ prefix: /registry/pods }", 'match.prefix "/registry/pods"'],
    ["{ prefix: /other/ }", 'match.prefix "/other/"'],
  ])("%s is refused, naming the field", (route, field) => {
    const f = topology(route);
    expect(() => loadCheckedConfig(["--config", f], {})).toThrow(`${f}: routes[0]: ${field}: with an upstream etcd among the backends (core) every route must take whole resources`);
  });
  test("without an upstream the same routes are fine", () => {
    const f = file("no-up.yaml", 'backends:\n  a: sqlite://a.db\n  b: sqlite://b.db\ndefault: a\nroutes:\n  - match: { resource: pods, namespace: "team-*" }\n    backend: b\n');
    expect(() => loadCheckedConfig(["--config", f], {})).not.toThrow();
  });
});

describe("etcd's flags", () => {
  // kubeadm's static pod manifest for etcd (v1.2x), its TLS paths and addresses kept
  const kubeadm = [
    "--advertise-client-urls=https://10.0.0.5:2379",
    "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
    "--client-cert-auth=true",
    "--data-dir=/var/lib/etcd",
    "--experimental-initial-corrupt-check=true",
    "--experimental-watch-progress-notify-interval=5s",
    "--initial-advertise-peer-urls=https://10.0.0.5:2380",
    "--initial-cluster=node-1=https://10.0.0.5:2380",
    "--key-file=/etc/kubernetes/pki/etcd/server.key",
    "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379",
    "--listen-metrics-urls=http://127.0.0.1:2381",
    "--listen-peer-urls=https://10.0.0.5:2380",
    "--name=node-1",
    "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
    "--peer-client-cert-auth=true",
    "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
    "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
    "--snapshot-count=10000",
    "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
  ];
  test("kubeadm's etcd command line is taken whole: each flag for what it means, raft and peer flags ignored and listed", () => {
    const c = loadConfig(kubeadm, {});
    expect(c.listenUrls.map((u) => u.origin)).toEqual(["https://127.0.0.1:2379", "https://10.0.0.5:2379"]);
    expect(c["advertise-client-urls"]).toBe("https://10.0.0.5:2379");
    expect(c.backend).toBe("sqlite:///var/lib/etcd/strata.db");
    expect([...c.topology.backends]).toEqual([["default", "sqlite:///var/lib/etcd/strata.db"]]);
    expect(c["metrics-listen"]).toBe("http://127.0.0.1:2381");
    expect(c.name).toBe("node-1");
    expect(c["watch-progress-notify-interval"]).toBe(5000);
    expect(c.tls).toMatchObject({ certFile: "/etc/kubernetes/pki/etcd/server.crt", keyFile: "/etc/kubernetes/pki/etcd/server.key", trustedCaFile: "/etc/kubernetes/pki/etcd/ca.crt", clientCertAuth: true });
    expect(c.ignoredEtcdFlags).toEqual([
      "--experimental-initial-corrupt-check", "--initial-advertise-peer-urls", "--initial-cluster", "--listen-peer-urls",
      "--peer-cert-file", "--peer-client-cert-auth", "--peer-key-file", "--peer-trusted-ca-file", "--snapshot-count",
    ]);
  });
  test("ignored flags take their value with them in either spelling; booleans take none", () => {
    const c = loadConfig(["--initial-cluster-state", "new", "--enable-v2", "--heartbeat-interval=100", "--name", "n", "--pre-vote", "--election-timeout", "1000"], {});
    expect(c.name).toBe("n");
    expect(c.ignoredEtcdFlags).toEqual(["--initial-cluster-state", "--enable-v2", "--heartbeat-interval", "--pre-vote", "--election-timeout"]);
  });
  test("etcd's other names and values: panic/fatal log levels, the apply-duration warning, single and listed URLs", () => {
    expect(loadConfig(["--log-level", "fatal"], {})["log-level"]).toBe("error");
    expect(loadConfig(["--log-level=panic"], {})["log-level"]).toBe("error");
    expect(loadConfig(["--experimental-warning-apply-duration", "250ms"], {})["slow-request-threshold"]).toBe(250);
    expect(loadConfig(["--max-concurrent-streams", "4294967295"], {})["max-concurrent-streams"]).toBe(4294967295);
    expect(() => loadConfig(["--max-concurrent-streams", "0"], {})).toThrow("max-concurrent-streams must be a whole number from 1 to 4294967295");
    expect(loadConfig(["--listen-client-urls", "http://localhost:2379"], {}).listenUrls.map(String)).toEqual(["http://localhost:2379/"]);
    expect(loadConfig(["--config", file("etcd-names.yaml", "listen-client-urls: http://127.0.0.1:7\n")], {}).listen).toBe("http://127.0.0.1:7");
  });
  test("mistakes are named: both names given, mixed schemes, a path, --data-dir beside --backend", () => {
    expect(() => loadConfig(["--listen", "http://127.0.0.1:1", "--listen-client-urls", "http://127.0.0.1:2"], {})).toThrow("flags --listen and --listen-client-urls set the same setting; give one");
    expect(() => loadConfig(["--listen-client-urls", "http://127.0.0.1:2379,https://127.0.0.1:2380"], {})).toThrow(
      "flag --listen-client-urls: listen: strata serves one scheme on all its client URLs; give only http:// or only https:// URLs",
    );
    expect(() => loadConfig(["--listen-client-urls", "unix://x"], {})).toThrow("flag --listen-client-urls: listen must be a URL starting with http:// or https://");
    expect(() => loadConfig(["--listen-client-urls", "http://127.0.0.1:2379/v3"], {})).toThrow("must name a host (and port) and no path");
    expect(() => loadConfig(["--data-dir", "/d", "--backend", "sqlite://x.db"], {})).toThrow("flag --data-dir: flag --backend says where the data lives too; give one");
    expect(() => loadConfig(["--no-such-etcd-flag", "1"], {})).toThrow("Unknown option '--no-such-etcd-flag'");
    // kine's and k3s's names: strata's flag that does the same (test/integration/front-door-errors.test.ts runs them)
    expect(() => loadConfig(["--endpoint=sqlite:///var/lib/kine.db"], {})).toThrow("--endpoint is kine's flag for the database; strata's is --backend sqlite:///var/lib/kine.db");
    expect(() => loadConfig(["--listen-address", "0.0.0.0:12379"], {})).toThrow("strata's is --listen http://0.0.0.0:12379");
    expect(() => loadConfig(["--config", file("kine.yaml", "endpoint: postgres://kine@db/kine\n")], {})).toThrow(
      `"endpoint" is not a strata setting: --endpoint is kine's flag for the database; strata's is --backend postgres://kine@db/kine`,
    );
  });
  test("etcd's environment (Debian's /etc/default/etcd): read under strata's own and the flags, its raft variables listed", () => {
    const env = { ETCD_NAME: "from-etcd-env", ETCD_DATA_DIR: "/var/lib/etcd", ETCD_LISTEN_CLIENT_URLS: "http://127.0.0.1:4001", ETCD_INITIAL_CLUSTER: "x=http://127.0.0.1:2380", ETCD_QUOTA_BACKEND_BYTES: "8589934592" };
    const c = loadConfig([], env);
    expect([c.name, c.backend, c.listen, c["quota-backend-bytes"]]).toEqual(["from-etcd-env", "sqlite:///var/lib/etcd/strata.db", "http://127.0.0.1:4001", 8589934592]);
    expect(c.ignoredEtcdFlags).toEqual(["ETCD_INITIAL_CLUSTER"]);
    expect(loadConfig(["--name", "flag"], { ...env, STRATA_NAME: "strata-env" }).name).toBe("flag");
    expect(loadConfig([], { ...env, STRATA_NAME: "strata-env" }).name).toBe("strata-env");
    expect(() => loadConfig([], { ETCD_MAX_TXN_OPS: "many" })).toThrow("environment ETCD_MAX_TXN_OPS: max-txn-ops must be a positive whole number");
  });
  test("a relative --data-dir is the working directory's", () => {
    expect(loadConfig(["--data-dir", "default.etcd"], {}).backend).toBe(`sqlite://${join(process.cwd(), "default.etcd", "strata.db")}`);
  });
});

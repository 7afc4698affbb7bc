// etcd's request validation: which requests are refused, and with which error.
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { RequestOpSchema, TxnRequestSchema } from "../../src/gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { checkTxn } from "../../src/api/checks.ts";

const b = (s: string) => new TextEncoder().encode(s);
const put = (key: string) => create(RequestOpSchema, { request: { case: "requestPut", value: { key: b(key) } } });
const del = (key: string, end = "") =>
  create(RequestOpSchema, { request: { case: "requestDeleteRange", value: { key: b(key), rangeEnd: b(end) } } });
const txn = (success: ReturnType<typeof put>[], failure: ReturnType<typeof put>[] = []) =>
  create(RequestOpSchema, { request: { case: "requestTxn", value: { success, failure } } });
const check = (success: ReturnType<typeof put>[], failure: ReturnType<typeof put>[] = [], maxOps = 128) =>
  () => checkTxn(create(TxnRequestSchema, { success, failure }), maxOps);

describe("txn validation", () => {
  test("a key put twice is a duplicate", () => {
    expect(check([put("a"), put("a")])).toThrow("etcdserver: duplicate key given in txn request");
  });
  test("a put inside a deleted range is a duplicate, whatever the order", () => {
    expect(check([put("b"), del("a", "c")])).toThrow("duplicate key");
    expect(check([del("b"), put("b")])).toThrow("duplicate key");
  });
  test("then and else branches of a nested txn may put the same key", () => {
    expect(check([txn([put("a")], [put("a")])])).not.toThrow();
  });
  test("a nested put of a key the outer txn puts is a duplicate", () => {
    expect(check([put("a"), txn([put("a")])])).toThrow("duplicate key");
  });
  test("overlapping deletes are allowed", () => {
    expect(check([del("a", "c"), del("b", "d")])).not.toThrow();
  });
  test("success and failure are checked separately", () => {
    expect(check([put("a")], [put("a")])).not.toThrow();
  });
  test("more operations than max-txn-ops are refused", () => {
    const ops = Array.from({ length: 129 }, (_, i) => put(`k${i}`));
    expect(check(ops)).toThrow("etcdserver: too many operations in txn request");
    expect(check(ops.slice(0, 128))).not.toThrow();
  });
  test("an empty operation is refused as etcd does", () => {
    expect(check([create(RequestOpSchema, {})])).toThrow("etcdserver: key not found");
  });
  test("an empty key in a put is refused", () => {
    expect(check([put("")])).toThrow("etcdserver: key is not provided");
  });
});

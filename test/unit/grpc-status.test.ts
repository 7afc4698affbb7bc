import { expect, test } from "bun:test";
import { grpcPercentEncode } from "../../src/api/grpc-status.ts";

test("grpc-message is percent-encoded only outside printable ASCII and for %", () => {
  expect(grpcPercentEncode("etcdserver: key is not provided")).toBe("etcdserver: key is not provided");
  expect(grpcPercentEncode("100% é")).toBe("100%25 %C3%A9");
  expect(grpcPercentEncode("a\nb")).toBe("a%0Ab");
});

// Loaded before every test file (bunfig.toml): database servers started for the tests
// are stopped when the run ends.
import { afterAll } from "bun:test";
import { stopDatabaseServers } from "./strata.ts";

afterAll(stopDatabaseServers);

// The configuration the commands run with: config/ parses flags, environment and file,
// then the topology is checked against what the router can serve (router/validate.ts)
// before any backend is opened. Config parsing stays free of the router; the commands,
// which compose the two, call this.
import { type Config, loadConfig } from "../config/config.ts";
import { validateTopology } from "../router/validate.ts";

/** loadConfig, then validateTopology; throws ConfigError naming the file, field and fix. */
export function loadCheckedConfig(argv: string[], env: Record<string, string | undefined>): Config {
  const config = loadConfig(argv, env);
  validateTopology(config.topology);
  return config;
}

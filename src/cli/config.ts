// The configuration the commands run with: config/ parses flags, environment and file,
// then the topology is checked against what the router can serve (router/validate.ts)
// before any backend is opened. Config parsing stays free of the router; the commands,
// which compose the two, call this.
import { type Config, ConfigError, loadConfig } from "../config/config.ts";
import { validateTopology } from "../router/validate.ts";

/**
 * loadConfig, then validateTopology; throws ConfigError naming the file, field and fix.
 * Only `strata serve` reads a topology from a URL or a Secret (once it runs): the other
 * commands say so rather than work on the default backend alone.
 */
export function loadCheckedConfig(argv: string[], env: Record<string, string | undefined>, remote = false): Config {
  const config = loadConfig(argv, env);
  const source = config.topologySource;
  if (source && !remote) {
    throw new ConfigError(`${source.kind === "url" ? source.url : source.source}: only strata serve reads a topology from a URL or a Secret; give this command the topology as a file (--config FILE)`);
  }
  validateTopology(config.topology);
  return config;
}

/** A configuration problem; its message names the source, the setting and the fix. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

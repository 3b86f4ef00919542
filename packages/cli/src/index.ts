export type { CliIo, Command } from "./io.js";
export { createProcessIo, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "./io.js";
export { commands, main } from "./main.js";

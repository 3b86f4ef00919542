export * from "./upstream.js";

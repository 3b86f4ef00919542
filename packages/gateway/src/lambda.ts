import pino from "pino";
import { createLambdaApp } from "./lambda-app.js";
import { createLambdaHandler } from "./lambda-handler.js";

// The Lambda entry: one app per warm instance, built from the environment at cold start.
export const handler = createLambdaHandler(createLambdaApp(process.env, pino({ name: "gateway" })));

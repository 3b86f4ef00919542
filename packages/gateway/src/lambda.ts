import { handle } from "hono/aws-lambda";
import pino from "pino";
import { createLambdaApp } from "./lambda-app.js";

// The Lambda entry: one app per warm instance, built from the environment at cold start.
export const handler = handle(createLambdaApp(process.env, pino({ name: "gateway" })));

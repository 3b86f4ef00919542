/**
 * Record headers the model gateway writes on a failed request. Seldon's components mark an error record with
 * `seldon-pipeline-errors: <model>` and put the message in the value of the record on the errors topic; Tern does
 * the same and, on the model's outputs topic, also carries the message and the gRPC status name in headers so that
 * a reader of the outputs topic (the dataflow) can fail the request without consulting the errors topic.
 */
export const ERROR_HEADER = "seldon-pipeline-errors";
export const ERROR_MESSAGE_HEADER = "tern-error";
export const ERROR_STATUS_HEADER = "tern-error-status";

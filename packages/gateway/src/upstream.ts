/** The gateway calls agents through core's HTTP upstream, the client an agent calls its MLServer through too. */
export {
  createHttpUpstream,
  type HttpUpstreamOptions,
  type Upstream,
  type UpstreamRequest,
  type UpstreamResponse,
} from "@tern/http";

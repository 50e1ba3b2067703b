/*! sseor.mjs: sseor.js as an ES module.  import { connect } from "/sseor.mjs"; */
import "./sseor.js";

const { connect, SseorStream, RESET_EVENT, DISCONNECT_EVENT } = globalThis.Sseor;
export { connect, SseorStream, RESET_EVENT, DISCONNECT_EVENT };
export default globalThis.Sseor;

/**
 * The typed errors of the NBD layer.
 *
 * - {@linkcode NbdProtocolError}: bytes from a peer that break the protocol
 *   (bad magic, impossible lengths, a value over a documented limit). The
 *   connection that carried them is dropped.
 * - {@linkcode NbdOptionError}: the server refused an option during the
 *   handshake (`NBD_REP_ERR_*`).
 * - {@linkcode NbdRequestError}: the server failed one request with an error
 *   value (`NBD_EIO`, `NBD_EPERM`, …); the connection stays up.
 * - {@linkcode NbdConnectionError}: the connection is gone, could not be made,
 *   or the client was closed.
 * - {@linkcode NbdTimeoutError}: a request got no reply in time.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/** Bytes from a peer that break the NBD protocol; `code` says which rule. */
export class NbdProtocolError extends QedstreamError {}

/** The server answered an option with an error reply; `code` is the spec's name. */
export class NbdOptionError extends QedstreamError {}

/** The server failed a request; `code` is the error's name (`"NBD_EIO"`). */
export class NbdRequestError extends QedstreamError {
  /** The error value on the wire (`5` for `NBD_EIO`). */
  readonly errno: number;

  /** Makes a request error from the wire value and the spec's name of it. */
  constructor(errno: number, code: string, message: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
    this.errno = errno;
  }
}

/**
 * No usable connection: `NBD_CONNECT_FAILED` (could not connect or
 * negotiate), `NBD_DISCONNECTED` (the server went away and the request was
 * not retried), `NBD_CLOSED` (the client or server was closed).
 */
export class NbdConnectionError extends QedstreamError {}

/** A request got no reply within the client's `requestTimeout`. */
export class NbdTimeoutError extends QedstreamError {}

/** An NBD URI or blockdev option set that cannot be used; the message names the part. */
export class NbdUriError extends QedstreamError {}

/**
 * A TCP connection whose connect() is issued at once, on this thread: for a
 * rank inside a synchronous collective (alloc, split) that must reach a node
 * it has no link to yet (issue 12.4: links are made on first use). net.connect
 * issues connect() only on a later tick, which a blocked thread never reaches;
 * libuv's TCP handle issues it at once (EINPROGRESS), so the descriptor
 * takes writes (AgentLink writes to it directly, queueing on EAGAIN) as soon
 * as the kernel has connected, while the event loop is still held. Node keeps
 * that handle behind process.binding('tcp_wrap') (documented as deprecated,
 * DEP0111, but present in the Node versions mprun supports); without it the
 * caller says why it cannot connect now.
 */
import { isIP, isIPv6, Socket } from 'node:net';

interface TcpHandle {
  connect(req: object, host: string, port: number): number;
  connect6(req: object, host: string, port: number): number;
  readonly fd: number;
}

interface TcpWrap {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => { oncomplete?: (status: number) => void; address?: string; port?: number };
  constants: { SOCKET: number };
}

function tcpWrap(): TcpWrap | null {
  try {
    const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
    const w = binding?.call(process, 'tcp_wrap') as TcpWrap | undefined;
    return w !== undefined && typeof w.TCP === 'function' && typeof w.TCPConnectWrap === 'function' ? w : null;
  } catch {
    return null;
  }
}

/**
 * A socket connecting to host:port, its descriptor (writable once connected)
 * and when it is connected (its reads start then); null when this Node cannot.
 */
export function connectNow(host: string, port: number): { socket: Socket; fd: number } | null {
  const h = host.startsWith('[') ? host.slice(1, -1) : host;
  const w = tcpWrap();
  // The handle takes addresses only (no name lookup without the event loop).
  if (w === null || isIP(h) === 0) return null;
  const handle = new w.TCP(w.constants.SOCKET);
  const req = new w.TCPConnectWrap();
  // Reads start once connected; a failed connect shows as an error on the first write or read.
  const socket = new Socket({ handle, manualStart: true } as unknown as ConstructorParameters<typeof Socket>[0]);
  req.oncomplete = () => void socket.read(0);
  req.address = host;
  req.port = port;
  const err = isIPv6(h) ? handle.connect6(req, h, port) : handle.connect(req, h, port);
  if (err !== 0 || handle.fd < 0) {
    socket.destroy();
    return null;
  }
  return { socket, fd: handle.fd };
}

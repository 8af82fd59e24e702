/**
 * The HTTP connections request-budget's own exporters send through. They are ours alone, so
 * that when the process stops and a backend does not answer within the exit bound, they can be
 * let go: a hanging backend then never keeps the process alive, whatever its exporter's own
 * timeout (OTLP retries for up to 10 s; the Zipkin exporter has none).
 */
import type { Agent } from 'node:http';
import type { Socket } from 'node:net';

type Connect = (...args: unknown[]) => Socket | undefined;

export class ExporterConnections {
  private readonly agents = new Map<string, Agent>();
  private readonly sockets = new Set<Socket>();
  private released = false;
  private refused = false;

  /**
   * The agent for `protocol` (`http:` or `https:`), made on first use. Loaded lazily, as the
   * OTLP exporters ask of an agent factory, so instrumentation-http patches the module first.
   */
  readonly agentFor = (protocol: string): Agent => {
    let agent = this.agents.get(protocol);
    if (agent === undefined) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded late on purpose (see above)
      const module = protocol === 'https:' ? (require('node:https') as typeof import('node:https')) : (require('node:http') as typeof import('node:http'));
      agent = new module.Agent({ keepAlive: true });
      this.track(agent);
      this.agents.set(protocol, agent);
    }
    return agent;
  };

  /**
   * Lets the process exit with connections still open: no socket of ours holds the event loop
   * from now on. For after a stop signal the app handles itself, once the bounded flush is over:
   * the app may go on draining, and what it exports meanwhile still goes out. (A request still
   * pending can hold the process until its exporter's own timeout: 10 s by default.)
   */
  release(): void {
    this.released = true;
    for (const socket of this.sockets) letGo(socket);
  }

  /** Ends every connection now, and refuses new ones: requests in flight or retried fail at once. */
  destroy(): void {
    this.release();
    this.refused = true;
    for (const socket of this.sockets) socket.destroy();
    for (const agent of this.agents.values()) agent.destroy();
  }

  /** Knows every socket the agent opens; once released, a new one is let go at once. */
  private track(agent: Agent): void {
    const patchable = agent as unknown as { createConnection: Connect };
    const connect = patchable.createConnection.bind(agent);
    patchable.createConnection = (...args) => {
      if (this.refused) throw new Error('request-budget is shutting down: exporter connections are closed');
      const socket = connect(...args);
      if (socket === undefined) return socket;
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      if (this.released) letGo(socket);
      return socket;
    };
  }
}

/** Unrefs the socket for good: Node refs a socket again each time it is handed to a request. */
function letGo(socket: Socket): void {
  socket.unref();
  socket.ref = () => socket;
}

// Types of melonsync.js.

/** What createSync and liveUpdates take. */
export interface MelonSyncOptions {
  /** Base URL of the melonsync server, e.g. "https://sync.example.com". */
  url: string
  /** The bearer token, or a function returning it (called for every request, so an
   * identity provider's SDK can refresh it). */
  token?: string | null | (() => string | null | Promise<string | null>)
  /** The local database's id (X-Melon-Device), ^[A-Za-z0-9_.-]{1,64}$; see deviceId(). */
  device?: string
  /** Also send X-Melon-Send-Created-As-Updated (use with synchronize's sendCreatedAsUpdated). */
  sendCreatedAsUpdated?: boolean
  /** Pushes of at least this many characters are gzipped where CompressionStream exists (default 65536; -1: never). */
  gzipMinBytes?: number
  /** fetch to use (default: globalThis.fetch). */
  fetch?: typeof fetch
  /** Called after a push whose answer refused records (they stay unsynced), with the
   * refused ids by table and the server's reasons by id ({"t1": "title too long"}). */
  onRejected?(rejectedIds: Record<string, string[]>, reasons: Record<string, string>): void
  /** Paged pulls: each pull answers about this many records (see syncAll). */
  pageSize?: number
  /** Called after each paged pull with the records pulled so far and an estimate of what remains. */
  onProgress?(progress: Progress): void
}

export interface Progress {
  pulled: number
  remaining: number
  hasMore: boolean
}

export interface PullArgs {
  lastPulledAt?: number | null
  schemaVersion: number
  migration: unknown
}

export interface PullResult {
  changes: Record<string, { created: object[]; updated: object[]; deleted: string[] }>
  timestamp: number
  experimentalStrategy?: 'replacement' | string
  /** Paged pulls: another page follows (also sent as experimentalHasMore). */
  hasMore?: boolean
  /** Paged pulls: estimate of the records the following pages bring. */
  remaining?: number
}

export interface PushArgs {
  changes: Record<string, { created: object[]; updated: object[]; deleted: string[] }>
  lastPulledAt: number
}

export interface PushResult {
  experimentalRejectedIds?: Record<string, string[]>
  /** Why each refused record was refused, by id (a write hook's reasons). */
  rejectedReasons?: Record<string, string>
}

export interface Sync {
  options: Readonly<Required<Pick<MelonSyncOptions, 'url'>> & MelonSyncOptions>
  pullChanges(args: PullArgs): Promise<PullResult>
  pushChanges(args: PushArgs): Promise<PushResult>
  /** { pullChanges, pushChanges, sendCreatedAsUpdated } for synchronize(). */
  syncOptions(): { pullChanges: Sync['pullChanges']; pushChanges: Sync['pushChanges']; sendCreatedAsUpdated: boolean }
  /** Runs sync (which calls synchronize() with these functions) until no page is left. */
  syncAll(sync: () => Promise<unknown>, options?: { maxRounds?: number }): Promise<{ rounds: number; pulled: number }>
  /** A stream-only ticket: POST /api/sync/events/ticket. expiresAt: ms since the epoch. */
  ticket(): Promise<{ ticket: string; expiresAt: number }>
}

export function createSync(options: MelonSyncOptions): Sync

export interface LiveUpdatesOptions extends MelonSyncOptions {
  /** Called (never twice at once) when another device changed the user's data, and after a reconnect. */
  onChange(timestamp: number): unknown | Promise<unknown>
  /** Called with every failure (ticket refused, stream broken, onChange rejected). */
  onError?(error: unknown): void
  /** Called when the stream is open, with the server's current timestamp. */
  onOpen?(timestamp: number): void
  /** EventSource to use (default: globalThis.EventSource). */
  EventSource?: typeof EventSource
  /** Longest delay between reconnects after failures (default 30000). */
  maxDelayMs?: number
}

export function liveUpdates(options: LiveUpdatesOptions): { close(): void }

/** A stable device id kept in localStorage (key default "melonsync.device"). */
export function deviceId(key?: string): string

/** Folds calls made while fn runs into one more run after it. */
export function serialize(fn: () => Promise<unknown>): () => Promise<void>

export interface ErrorInfo {
  status?: number
  code?: string
  details?: Record<string, unknown>
  retryAfter?: number | null
  cause?: unknown
}

export class MelonSyncError extends Error {
  constructor(message: string, info?: ErrorInfo)
  /** HTTP status; 0 when there was no answer. */
  status: number
  /** The answer's error code ("conflict", "unauthorized", …). */
  code: string
  details: Record<string, unknown>
  /** Seconds from Retry-After, or null. */
  retryAfter: number | null
}
/** 409: the sync fails; the next one merges and pushes again. */
export class ConflictError extends MelonSyncError {}
/** 401/403: token missing, expired or refused; device revoked. */
export class AuthError extends MelonSyncError {}
/** 429/503/507: retry after retryAfter seconds. */
export class UnavailableError extends MelonSyncError {}
/** No answer: offline, or a CORS refusal. */
export class NetworkError extends MelonSyncError {}

/** API types: generated from engine::api by ts-rs (./generated), plus UI-only names. */
export type * from './generated';

/** A queue of a lane, as the Live screen groups tasks. */
export type Queue = 'setup' | 'test' | 'teardown' | 'delay';

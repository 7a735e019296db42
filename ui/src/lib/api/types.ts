/**
 * API types: the generated ones (engine::api via ts-rs, in ./generated) plus the lab and
 * reservation shapes the Lab screen and DUT search use.
 */
export type * from './generated';

export type EpochMs = number;
/** A queue of a lane, as the Live screen groups tasks. */
export type Queue = 'setup' | 'test' | 'teardown' | 'delay';

export type SlotState = 'free' | 'held' | 'in_use' | 'offline';

export interface Dut {
  name: string;
  model: string;
  manufacturer: string;
  serial: string;
  hw_version: string;
  tags: string[];
  ats: string | null;
  slot: number | null;
  state: SlotState;
  holder: string | null;
}

export interface Slot {
  slot: number;
  dut: string | null;
  state: SlotState;
  holder: string | null;
}

export interface Rack {
  name: string;
  description: string;
  slots: Slot[];
}

export interface ResourceInfo {
  name: string;
  kind: 'exclusive' | 'shared';
  capacity: number;
  config: Record<string, unknown>;
  in_use: number;
}

export interface Lab {
  racks: Rack[];
  duts: Dut[];
  resources: ResourceInfo[];
}

export interface Reservation {
  id: string;
  target: string;
  kind: 'dut' | 'resource';
  holder: string;
  start: EpochMs;
  end: EpochMs;
  state: 'pre_reserved' | 'claimed' | 'held';
  manual: boolean;
}

export interface Waiter {
  target: string;
  holder: string;
  since: EpochMs;
  available_at: EpochMs | null;
}

export interface Reservations {
  now: EpochMs;
  reservations: Reservation[];
  waiters: Waiter[];
}


export interface ExportFile {
  filename: string;
  mime: string;
  content: string;
}

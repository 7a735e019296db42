/** Lab screen logic without Svelte: the DUT a `#/lab/dut/<name>` route opens, a DUT's runs. */
import type { Dut, LabView, RunRecord, SlotView } from './api/client';

export interface OpenedDut {
  dut: Dut;
  slot: SlotView | null;
  rack: string | null;
}

/** The DUT named by the Lab route's args (`['dut', name]`) with its rack and slot; null for any other route or an unknown DUT. */
export function openedDut(lab: Pick<LabView, 'duts' | 'racks'> | null, args: string[]): OpenedDut | null {
  const [kind, name] = args;
  if (kind !== 'dut' || !name || !lab) return null;
  const dut = lab.duts.find((d) => d.name === name);
  if (!dut) return null;
  for (const rack of lab.racks) {
    const slot = rack.slots.find((s) => s.dut === name);
    if (slot) return { dut, slot, rack: rack.name };
  }
  return { dut, slot: null, rack: null };
}

/** The runs that had a lane on `dut` (the run listing's DUT filter also takes `*` patterns). */
export function runsOn<R extends Pick<RunRecord, 'duts'>>(runs: R[], dut: string): R[] {
  return runs.filter((r) => r.duts.some((d) => d.name === dut));
}

"""Energy of one job: action counts x energy per action (from the hardware YAML) + static power.

Components (pJ), which sum to the total:

- ``mac``: MACs issued x ``energy.mac_<precision>``.
- ``rf``: per issued MAC, ``pe_array.operand_reads_per_mac`` operand reads (operand bits) and
  ``pe_array.psum_accesses_per_mac`` partial-sum accesses, half reads and half writes (accumulator
  bits), in the PE register file, x ``rf_read_per_bit`` / ``rf_write_per_bit``.
- ``buffer``: global-buffer bits read and written x ``gb_read_per_bit`` / ``gb_write_per_bit``,
  plus the operand bits the buffer delivers into the PE register files (``rf_fill_bits``) x
  ``rf_write_per_bit``: moving operands between buffer and PEs.
- ``dram``: DRAM bits x ``dram.energy_pj_per_bit``.
- ``index``: decoded indices x ``index_decode`` (zero for dense jobs).
- ``network``: MACs issued through the compaction network (``decoder.compaction``: the
  distribution network that packs active work onto lanes and the reduction network behind
  them) x ``compaction_network_per_mac``, or through a lane scheduler's multiplexers
  (``decoder.lane_scheduler``, adder-tree phases) x ``lane_scheduler_per_mac`` (zero without
  either and for dense jobs).
- ``static``: ``static_power_mw`` x job time; mW x cycles / MHz = nJ, so x 1e3 gives pJ.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelsim.config import COMPACTION_NETWORK, LANE_SCHEDULER, HardwareConfig

ENERGY_COMPONENTS: tuple[str, ...] = ("mac", "rf", "buffer", "dram", "index", "network",
                                      "static")


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy of one job by component (pJ)."""

    mac: float
    rf: float
    buffer: float
    dram: float
    index: float
    network: float
    static: float

    @property
    def total(self) -> float:
        """Sum of the components (pJ), added in field order (ENERGY_COMPONENTS)."""
        return self.mac + self.rf + self.buffer + self.dram + self.index + self.network + \
            self.static


def static_energy_pj(cycles: float, hw: HardwareConfig) -> float:
    """Static energy (pJ) over ``cycles`` clock cycles."""
    return EnergyRates.of(hw).static(cycles)


@dataclass(frozen=True)
class EnergyRates:
    """The per-action energies of one ``hw`` (pJ per MAC, register-file bit, buffer bit, DRAM
    byte, decoded index), looked up once: a replay prices every job with the same rates."""

    mac: float
    rf_read_bits_per_mac: float
    rf_write_bits_per_mac: float
    rf_read: float
    rf_write: float
    gb_read: float
    gb_write: float
    dram_bits: float
    index: float
    network: float
    static_power_mw: float
    clock_mhz: float

    @classmethod
    def of(cls, hw: HardwareConfig) -> EnergyRates:
        """The rates of ``hw``."""
        op, acc = hw.operand_bits, hw.accumulator_bits
        pe = hw.pe_array
        psum_bits = pe.psum_accesses_per_mac / 2 * acc
        return cls(mac=hw.mac_energy_pj,
                   rf_read_bits_per_mac=pe.operand_reads_per_mac * op + psum_bits,
                   rf_write_bits_per_mac=psum_bits,
                   rf_read=hw.energy_pj("rf_read_per_bit"),
                   rf_write=hw.energy_pj("rf_write_per_bit"),
                   gb_read=hw.energy_pj("gb_read_per_bit"),
                   gb_write=hw.energy_pj("gb_write_per_bit"),
                   dram_bits=hw.dram.energy_pj_per_bit, index=hw.energy_pj("index_decode"),
                   network=_network_rate(hw),
                   static_power_mw=hw.static_power_mw, clock_mhz=pe.clock_mhz)

    def breakdown(self, *, macs_issued: float, gb_read_bits: float, gb_write_bits: float,
                  rf_fill_bits: float, dram_bytes: float, indices_decoded: float,
                  cycles: float, network_macs: float = 0.0) -> EnergyBreakdown:
        """Energy breakdown of a job from its action counts (see the module docstring)."""
        return EnergyBreakdown(
            mac=macs_issued * self.mac,
            rf=macs_issued * self.rf_read_bits_per_mac * self.rf_read
            + macs_issued * self.rf_write_bits_per_mac * self.rf_write,
            buffer=gb_read_bits * self.gb_read + gb_write_bits * self.gb_write
            + rf_fill_bits * self.rf_write,
            dram=dram_bytes * 8 * self.dram_bits,
            index=indices_decoded * self.index,
            network=network_macs * self.network,
            static=self.static(cycles),
        )

    def static(self, cycles: float) -> float:
        """Static energy (pJ) over ``cycles`` clock cycles: mW x cycles / MHz = nJ."""
        return self.static_power_mw * cycles / self.clock_mhz * 1e3


def _network_rate(hw: HardwareConfig) -> float:
    """pJ per MAC through the lane network: the lane scheduler's where it has one (it excludes
    compaction), else the compaction network's (0 without an entry)."""
    if hw.decoder.lane_scheduler != "none":
        return hw.energy_pj(LANE_SCHEDULER)
    return hw.energy_pj(COMPACTION_NETWORK) if COMPACTION_NETWORK in hw.energy else 0.0


def energy_of(*, macs_issued: float, gb_read_bits: float, gb_write_bits: float,
              rf_fill_bits: float, dram_bytes: float, indices_decoded: float, cycles: float,
              hw: HardwareConfig, network_macs: float = 0.0) -> EnergyBreakdown:
    """Energy breakdown of a job from its action counts (see the module docstring)."""
    return EnergyRates.of(hw).breakdown(
        macs_issued=macs_issued, gb_read_bits=gb_read_bits, gb_write_bits=gb_write_bits,
        rf_fill_bits=rf_fill_bits, dram_bytes=dram_bytes, indices_decoded=indices_decoded,
        cycles=cycles, network_macs=network_macs)


"""Capture: the target's processes and threads read into records (probes, in gilviz/probes).

states.py holds the state rules, processes.py the processes followed and their GILs,
budget.py what sampling may cost, stacks.py the py-spy reader beside the loop; the loop
itself is gilviz/sampler.py.
"""

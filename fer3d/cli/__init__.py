"""fer3d.cli: the click commands of the training side.

Stage: user -> fer3d. One module per command: :mod:`~fer3d.cli.train` (fer3d-train),
:mod:`~fer3d.cli.eval` (fer3d-eval), :mod:`~fer3d.cli.reproduce` (fer3d-reproduce),
:mod:`~fer3d.cli.report` (fer3d-report), :mod:`~fer3d.cli.cam` (fer3d-cam) and
:mod:`~fer3d.cli.demo` (the README's demo); :mod:`~fer3d.cli.options` generates their
options from the settings table. Each command parses its options and calls one library
function; none imports torch before its body runs, so every ``--help`` works without it.
"""

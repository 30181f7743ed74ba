"""The rendering layer: terminal text (styles, tables, word wrap) and the text of every answer.

Front ends (cli/, web/) call into here; it reads the JSON-ready dicts and records the domain
packages produce, and never imports a front end. Kept import-light: `portatlas PORT` imports
render.terminal on every run, so this __init__ imports nothing.

    terminal   Style, colour_enabled, terminal_width, wrap, table, print_json
    port       the "here" and "history" sections of a port answer (by section key)
    local      `portatlas local` (table, --long, --watch lines, warnings)
    history    the history section and `portatlas history`
    scan       the scan/check table
    identify   identification lines under a port and `local --identify`
The one terminal-safety function is portatlas.textsafe.printable (core: domain messages use
it too).
"""

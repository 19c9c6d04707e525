from pcf_exchange.pcfx.cli import main

main()

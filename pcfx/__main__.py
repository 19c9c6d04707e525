from pcfx.cli import main

main()

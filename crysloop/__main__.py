from crysloop.cli import main

main()

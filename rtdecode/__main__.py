from rtdecode.cli import main

main()

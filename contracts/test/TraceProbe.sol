// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title A child contract for TraceProbe: holds ether, can self-destruct.
contract TraceChild {
    constructor() payable {}

    receive() external payable {}

    /// Sends the whole balance to `beneficiary` (EIP-6780: the code stays unless the
    /// contract was created in the same transaction).
    function boom(address payable beneficiary) external {
        selfdestruct(beneficiary);
    }
}

/// @title A test contract whose calls leave internal value transfers and creations in
/// the node's call traces (the indexer's trace and balance tests).
contract TraceProbe {
    event Spawned(address child);

    receive() external payable {}

    /// Forwards `amounts[i]` of the attached value to `to[i]` (internal CALLs with value).
    function split(address payable[] calldata to, uint256[] calldata amounts) external payable {
        require(to.length == amounts.length, "lengths");
        for (uint256 i = 0; i < to.length; i++) {
            (bool ok, ) = to[i].call{value: amounts[i]}("");
            require(ok, "send");
        }
    }

    /// An internal CREATE and an internal CREATE2, each endowed with `endowment`.
    function spawn(uint256 endowment, bytes32 salt) external payable returns (address a, address b) {
        a = address(new TraceChild{value: endowment}());
        b = address(new TraceChild{value: endowment, salt: salt}());
        emit Spawned(a);
        emit Spawned(b);
    }

    /// A reverted internal call with value (it also creates a child and pays `to`, both
    /// undone), then a successful payment of `paid` to `to`.
    function tryAndPay(address payable to, uint256 failed, uint256 paid) external payable {
        try this.payThenRevert{value: failed}(to) {
            revert("unreachable");
        } catch {}
        (bool ok, ) = to.call{value: paid}("");
        require(ok, "send");
    }

    function payThenRevert(address payable to) external payable {
        new TraceChild{value: 1}();
        (bool ok, ) = to.call{value: msg.value / 2}("");
        require(ok, "send");
        revert("undone");
    }

    /// Creates a child with the attached value that self-destructs at once, paying
    /// `beneficiary` (a contract created and destroyed in one transaction).
    function spawnAndKill(address payable beneficiary) external payable returns (address child) {
        TraceChild c = new TraceChild{value: msg.value}();
        c.boom(beneficiary);
        child = address(c);
    }

    /// Always reverts (a failed transaction).
    function fail() external payable {
        revert("fail");
    }
}
